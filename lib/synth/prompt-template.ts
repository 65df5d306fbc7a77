/**
 * The training prompt template (method.md §1.2, items 1-6), the single source of every
 * synthesised `problem`. It is a module rather than a .txt file because the build (tsc)
 * copies no data files into dist/. `{{WIDTH}}` and `{{HEIGHT}}` are the only placeholders;
 * the rendered text ends with "Now answer the following question:\n", after which the
 * caller appends "\nQ. <question>\nOptions:\n(A) ..." (a blank line, then the question).
 *
 * The wording is ours; the structure follows the reference: the `<image>` marker, a role
 * sentence, the task bullets, the observe / scene / think / answer skeleton (each tag on
 * its own line), one worked example (bike.1 [0, 272, 310, 551], man.1 [0, 165, 38, 278],
 * man.1 behind bike.1, answer "(A) behind"), the image size line and the question lead-in.
 */
export const PROMPT_TEMPLATE = `<image> You are a vision-language assistant. You answer a question about an image by looking at the image closely, picking out the objects and relationships that matter for the question, and reasoning over them as a structured scene graph.

Your task is to:
- Find the objects you need in order to answer the question, together with any relationships between them that bear on it, and locate each of these objects in the image.
- Write these objects and relationships down as a scene graph in the format given below. The scene graph is a structured, mind-mapped knowledge representation of what the question depends on, so include only the objects and relationships that are directly relevant to answering it.
- Think the question through using both what you observed in the image and the scene graph you wrote, and only then give your final answer.
- In the scene graph, give every object a unique ID of the form "object_name.number" (for example "boy.1" or "plate.2") and a bounding box in pixel coordinates, written as [x1, y1, x2, y2].
- Lay out your output in exactly this structure:
<observe>
{Describe the scene in the image, covering the objects that are relevant to the question. Which objects in the image should you focus on to answer it?}
</observe>
<scene>
{
"objects": [
{"id": "object_name.1", "bbox": [x1, y1, x2, y2]},
...
],
"relationships": [
{"subject": "object_name.1", "predicate": "predicate_word", "object": "object_name.2"},
...
]
}
</scene>
<think>
{Reason step by step, as an inner monologue, over your observations and the scene graph, using the relevant objects and their relationships. Explain how the visual evidence leads to your answer and which line of reasoning took you there.}
</think>
<answer>
{Your final answer}
</answer>

Example:
Q. Where is the man with respect to the bike?
Options: (A) behind (B) in front of (C) beside (D) on top of

<observe>
The picture shows a street scene with a man standing on the pavement next to a bicycle. The objects that matter for the question are the man and the bike. The bicycle is seen from the side in the foreground and fills much of the lower half of the picture, while the man stands near the upper-left edge. Part of his legs is hidden by the bicycle, which means he is farther from the camera than the bike is.
</observe>
<scene>
{
"objects": [
{"id": "bike.1", "bbox": [0, 272, 310, 551]},
{"id": "man.1", "bbox": [0, 165, 38, 278]}
],
"relationships": [
{"subject": "man.1", "predicate": "behind", "object": "bike.1"}
]
}
</scene>
<think>
The bike occludes the man's legs and its box lies lower in the frame, so the bike is nearer to the camera and the man stands behind it; the scene graph records this as "man.1 behind bike.1". Of the options (A) behind, (B) in front of, (C) beside and (D) on top of, the one that fits is "behind".
</think>
<answer>
(A) behind
</answer>

Image size: ({{WIDTH}} x {{HEIGHT}})

Now answer the following question:
`;
