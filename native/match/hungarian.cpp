#include "match/hungarian.h"

#include <algorithm>
#include <limits>
#include <utility>

namespace st::match {

bool AssignmentSolver::solve(const double* cost, int rows, int cols, int32_t* row_to_col,
                             double* total) {
  *total = 0.0;
  if (rows == 0 || cols == 0) {
    std::fill(row_to_col, row_to_col + rows, -1);
    return true;
  }
  if (rows <= cols) {
    if (!solve_wide(cost, rows, cols, row_to_col)) return false;
  } else {
    // Tall matrices are solved transposed so that every column gets a row.
    transposed_.resize(size_t(rows) * cols);
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) transposed_[size_t(c) * rows + r] = cost[size_t(r) * cols + c];
    transposed_result_.resize(cols);
    if (!solve_wide(transposed_.data(), cols, rows, transposed_result_.data())) return false;
    std::fill(row_to_col, row_to_col + rows, -1);
    for (int c = 0; c < cols; ++c) row_to_col[transposed_result_[c]] = c;
  }
  double sum = 0.0;
  for (int r = 0; r < rows; ++r)
    if (row_to_col[r] >= 0) sum += cost[size_t(r) * cols + row_to_col[r]];
  *total = sum;
  return true;
}

// rows <= cols: every row is assigned, one augmenting path per row.
bool AssignmentSolver::solve_wide(const double* cost, int rows, int cols, int32_t* row_to_col) {
  u_.assign(rows, 0.0);
  v_.assign(cols, 0.0);
  shortest_.resize(cols);
  path_.assign(cols, -1);
  col_of_row_.assign(rows, -1);
  row_of_col_.assign(cols, -1);
  remaining_.resize(cols);
  row_visited_.resize(rows);
  col_visited_.resize(cols);
  for (int root = 0; root < rows; ++root) {
    double path_cost;
    const int sink = augmenting_path(cost, rows, cols, root, &path_cost);
    if (sink < 0) return false;
    // Dual update for the rows and columns the search reached.
    u_[root] += path_cost;
    for (int r = 0; r < rows; ++r)
      if (row_visited_[r] && r != root) u_[r] += path_cost - shortest_[col_of_row_[r]];
    for (int c = 0; c < cols; ++c)
      if (col_visited_[c]) v_[c] -= path_cost - shortest_[c];
    // Flip the path from the free column found back to the root.
    for (int c = sink;;) {
      const int r = path_[c];
      row_of_col_[c] = r;
      std::swap(col_of_row_[r], c);
      if (r == root) break;
    }
  }
  std::copy(col_of_row_.begin(), col_of_row_.end(), row_to_col);
  return true;
}

// Dijkstra over reduced costs from the root row to the nearest free column;
// returns that column (or -1 when every column left costs +inf) and its
// distance in *path_cost.
int AssignmentSolver::augmenting_path(const double* cost, int rows, int cols, int root,
                                      double* path_cost) {
  const double inf = std::numeric_limits<double>::infinity();
  int left = cols;
  for (int k = 0; k < cols; ++k) remaining_[k] = cols - k - 1;
  std::fill(row_visited_.begin(), row_visited_.begin() + rows, 0);
  std::fill(col_visited_.begin(), col_visited_.end(), 0);
  std::fill(shortest_.begin(), shortest_.end(), inf);
  double distance = 0.0;
  int row = root;
  for (;;) {
    row_visited_[row] = 1;
    const double* cost_row = cost + size_t(row) * cols;
    const double u_row = u_[row];
    int best = -1;
    double lowest = inf;
    for (int k = 0; k < left; ++k) {
      const int c = remaining_[k];
      const double reduced = distance + cost_row[c] - u_row - v_[c];
      if (reduced < shortest_[c]) {
        path_[c] = row;
        shortest_[c] = reduced;
      }
      if (shortest_[c] < lowest || (shortest_[c] == lowest && row_of_col_[c] == -1)) {
        lowest = shortest_[c];
        best = k;
      }
    }
    if (best < 0 || lowest == inf) return -1;
    distance = lowest;
    const int col = remaining_[best];
    col_visited_[col] = 1;
    remaining_[best] = remaining_[--left];
    if (row_of_col_[col] == -1) {
      *path_cost = distance;
      return col;
    }
    row = row_of_col_[col];
  }
}

}  // namespace st::match
