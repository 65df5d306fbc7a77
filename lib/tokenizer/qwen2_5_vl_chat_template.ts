/**
 * The Qwen2.5-VL chat template (Jinja), as shipped with the Qwen2.5-VL-Instruct checkpoints
 * (chat_template.json), used when a model directory carries no template of its own.
 *
 * Output (shared/spec/qwen25vl.md §2), with add_generation_prompt:
 *   <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n      (only if messages[0] is not a system message)
 *   <|im_start|>{role}\n{content}<|im_end|>\n                            (each message)
 *   <|im_start|>assistant\n                                               (generation prompt)
 * A string content is emitted as is; a list content emits, in order, each image part as
 * `<|vision_start|><|image_pad|><|vision_end|>` (a part counts as an image when its type is
 * "image" or it has an "image"/"image_url" key), each video part as
 * `<|vision_start|><|video_pad|><|vision_end|>`, and each text part's text as is. With
 * `add_vision_id` true, images/videos are prefixed "Picture k: " / "Video k: ".
 *
 * No newline other than the explicit "\n"s: the template is one line, so the trim_blocks /
 * lstrip_blocks settings that Hugging Face (and @huggingface/jinja) apply change nothing.
 */
export const QWEN2_5_VL_CHAT_TEMPLATE: string =
  "{% set image_count = namespace(value=0) %}" +
  "{% set video_count = namespace(value=0) %}" +
  "{% for message in messages %}" +
  "{% if loop.first and message['role'] != 'system' %}" +
  "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" +
  "{% endif %}" +
  "<|im_start|>{{ message['role'] }}\n" +
  "{% if message['content'] is string %}" +
  "{{ message['content'] }}<|im_end|>\n" +
  "{% else %}" +
  "{% for content in message['content'] %}" +
  "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}" +
  "{% set image_count.value = image_count.value + 1 %}" +
  "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}" +
  "<|vision_start|><|image_pad|><|vision_end|>" +
  "{% elif content['type'] == 'video' or 'video' in content %}" +
  "{% set video_count.value = video_count.value + 1 %}" +
  "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}" +
  "<|vision_start|><|video_pad|><|vision_end|>" +
  "{% elif 'text' in content %}" +
  "{{ content['text'] }}" +
  "{% endif %}" +
  "{% endfor %}" +
  "<|im_end|>\n" +
  "{% endif %}" +
  "{% endfor %}" +
  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
