/**
 * Rewards by name. Built-ins (`spatial`, `spatial_ungated`, `sparse`, `sparse_scene`) are registered the same way
 * as a user's function; the trainer and `spatialthinker score` look rewards
 * up here.
 */
import { SparseReward, SparseSceneReward } from './sparse-reward.js';
import { SpatialReward, type SpatialRewardOptions } from './spatial-reward.js';
import type { BatchReward, RewardFunction, RewardInput, RewardScores } from './types.js';

/** Builds a reward from options (for the built-ins, their constructor options). */
export type RewardFactory = (options?: Record<string, unknown>) => BatchReward;

export class RewardRegistry {
  private readonly factories = new Map<string, RewardFactory>();

  /** Registers a batch reward or a per-completion function (sync or async). */
  register(name: string, reward: BatchReward | RewardFunction): this {
    return this.registerFactory(name, typeof reward === 'function' ? () => fromFunction(name, reward) : () => reward);
  }

  /** Registers a reward built per use from options (as the built-ins are). */
  registerFactory(name: string, factory: RewardFactory): this {
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new Error(`reward name "${name}" must be letters, digits, '_', '.' or '-'`);
    if (this.factories.has(name)) throw new Error(`a reward named "${name}" is already registered`);
    this.factories.set(name, factory);
    return this;
  }

  has(name: string): boolean {
    return this.factories.has(name);
  }

  names(): string[] {
    return [...this.factories.keys()];
  }

  create(name: string, options?: Record<string, unknown>): BatchReward {
    const factory = this.factories.get(name);
    if (!factory) throw new Error(`unknown reward "${name}" (registered: ${this.names().join(', ')})`);
    return factory(options);
  }
}

/**
 * Wraps a per-completion function as a batch reward that checks what it
 * returns: a reward that throws or returns a non-finite `overall` names the
 * batch item instead of corrupting training.
 */
export function fromFunction(name: string, fn: RewardFunction): BatchReward {
  return {
    name,
    async scoreBatch(inputs: readonly RewardInput[]): Promise<RewardScores[]> {
      return Promise.all(
        inputs.map(async (input, index) => {
          let scores: RewardScores;
          try {
            scores = await fn(input);
          } catch (error) {
            const reason = error instanceof Error ? error.message : String(error);
            throw new Error(`reward "${name}" failed on batch item ${index}: ${reason}`, { cause: error });
          }
          if (typeof scores !== 'object' || scores === null || !Number.isFinite(scores.overall))
            throw new Error(`reward "${name}" returned no finite "overall" for batch item ${index}`);
          for (const [component, value] of Object.entries(scores))
            if (typeof value !== 'number' || !Number.isFinite(value))
              throw new Error(`reward "${name}" returned a non-finite "${component}" for batch item ${index}`);
          return scores;
        }),
      );
    },
  };
}

/** The registry with the built-in rewards; `register` adds yours. */
export const rewards = new RewardRegistry()
  .registerFactory('spatial', (options) => new SpatialReward(options as SpatialRewardOptions))
  .registerFactory('sparse', () => new SparseReward())
  .registerFactory('sparse_scene', () => new SparseSceneReward())
  .registerFactory('spatial_ungated', (options) => new SpatialReward({ ...(options as SpatialRewardOptions), gated: false }));
