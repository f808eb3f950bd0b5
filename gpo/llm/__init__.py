"""The GPO paper's LLM baselines: prompting (zero-shot, steered, few-shot) and LoRA-trained
(per-group SFT, per-group reward model, in-context fine-tuning), scored like every method."""

LLM_BASELINES = ("zero_shot", "steered", "few_shot", "sft", "reward", "icft")
