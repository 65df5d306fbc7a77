#pragma once
// Exact minimum-cost assignment for one rectangular matrix: shortest
// augmenting paths with dual potentials updated once per augmentation
// (Crouse 2016, "On implementing 2D rectangular assignment algorithms", the
// method scipy.optimize.linear_sum_assignment uses), O(r^2 c) for r <= c.
// Ties follow the same rules as that method (a free column wins a tie, then
// the column scanned first; columns are scanned from the last), so results
// agree with scipy's even on matrices with equal costs.
#include <cstdint>
#include <vector>

namespace st::match {

class AssignmentSolver {
 public:
  // cost is row-major rows x cols. Fills row_to_col (rows entries; -1 for the
  // rows left over when rows > cols) and the total cost of the assignment;
  // returns false when no finite assignment exists. Entries must not be NaN
  // or -inf (validate first).
  bool solve(const double* cost, int rows, int cols, int32_t* row_to_col, double* total);

 private:
  bool solve_wide(const double* cost, int rows, int cols, int32_t* row_to_col);
  int augmenting_path(const double* cost, int rows, int cols, int root, double* path_cost);

  std::vector<double> transposed_, u_, v_, shortest_;
  std::vector<int32_t> path_, col_of_row_, row_of_col_, remaining_, transposed_result_;
  std::vector<char> row_visited_, col_visited_;
};

}  // namespace st::match
