/** What every reward function receives and returns. */

/** The image the prompt refers to: the size the boxes are written in, and the size the model saw. */
export interface ImageGeometry {
  /** Width of the original image, the frame of every box (`Image size: (W x H)`). */
  width: number;
  height: number;
  /** Size after the processor's resize, when known. */
  resizedWidth?: number;
  resizedHeight?: number;
}

export interface RewardInput {
  /** The decoded completion (special tokens removed). */
  completion: string;
  /** The ground-truth string: `<scene>{...}</scene>\n<answer>(B) behind</answer>`. */
  groundTruth: string;
  /** The prompt text (the dataset's `problem`). */
  prompt: string;
  /** Absent when the size is unknown (text-only rewards such as `sparse` do not need it). */
  image?: ImageGeometry;
}

/** `overall` is the scalar the trainer optimises; the other entries are logged. */
export interface RewardScores {
  overall: number;
  [component: string]: number;
}

/** A reward scores a whole rollout batch at once (built-ins batch their native calls). */
export interface BatchReward {
  readonly name: string;
  scoreBatch(inputs: readonly RewardInput[]): Promise<RewardScores[]>;
  /** Why an input cannot be scored (bad ground truth, image size), checked before batching; optional. */
  validate?(input: RewardInput): string | undefined;
}

/** A user's reward for one completion; sync or async. */
export type RewardFunction = (input: RewardInput) => RewardScores | Promise<RewardScores>;

/** Bad reward input that is not model output (a malformed ground truth or prompt): names the batch item. */
export class RewardInputError extends Error {
  constructor(
    readonly index: number,
    message: string,
  ) {
    super(message);
    this.name = 'RewardInputError';
  }
}
