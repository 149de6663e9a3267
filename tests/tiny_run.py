"""Tiny settings shared by the CLI tests: gin bindings on top of quickstart.gin that make a whole
run take about a minute on CPU, the reward-model equivalents, and a tiny model config."""

from prime_jax.models import ModelConfig

TINY = [
    "configs/quickstart.gin",
    "prime_jax.rl.sft.SFTConfig.steps = 6",
    "prime_jax.rl.sft.SFTConfig.batch_size = 16",
    "prime_jax.rl.sft.SFTConfig.log_every = 3",
    "prime_jax.data.task_config.TaskConfig.num_train = 64",
    "prime_jax.data.task_config.TaskConfig.num_eval = 8",
    "prime_jax.data.task_config.TaskConfig.num_sft = 64",
    "prime_jax.experience.collect.CollectConfig.batch_prompts = 4",
    "prime_jax.experience.collect.CollectConfig.max_rollout_rounds = 1",
    # A 6-step SFT model solves almost nothing, so nearly every group is out of band: top the batch
    # up with dropped groups so that the whole update path runs (the default, "mask", would train on
    # placeholder rows only; tests/rl/test_update.py covers it).
    'prime_jax.experience.collect.CollectConfig.short_batch = "fill_from_dropped"',
    "prime_jax.rl.config.PrimeConfig.prm_mini_batch = 8",
    "prime_jax.rl.config.PrimeConfig.policy_mini_batch = 8",
    "prime_jax.rollout.SamplingConfig.max_new_tokens = 12",
    "prime_jax.training.run_config.RunConfig.eval_batch_prompts = 8",
    "prime_jax.training.run_config.RunConfig.eval_every = 2",
    "prime_jax.training.run_config.RunConfig.checkpoint_every = 1",
    "prime_jax.training.run_config.RunConfig.verifier_workers = 1",
    "prime_jax.models.ModelConfig.hidden_size = 32",
    "prime_jax.models.ModelConfig.intermediate_size = 64",
    "prime_jax.models.ModelConfig.num_layers = 1",
    "prime_jax.models.ModelConfig.head_dim = 8",
]


def tiny_reward_bindings(config_file: str, *, num_train: int, num_prompts: int) -> list[str]:
    """Bindings on top of a ``configs/reward_*.gin`` file for a train_reward run of seconds."""
    return [
        config_file,
        f"prime_jax.data.task_config.TaskConfig.num_train = {num_train}",
        f"prime_jax.reward_models.offline.RewardDataConfig.num_prompts = {num_prompts}",
        "prime_jax.reward_models.offline.RewardDataConfig.rollout_prompts = 8",
        "prime_jax.reward_models.offline.RewardDataConfig.val_fraction = 0.25",
        "prime_jax.reward_models.offline.train_reward.mini_batch = 8",
        "prime_jax.reward_models.offline.train_reward.epochs = 1",
        "prime_jax.training.run_config.RunConfig.verifier_workers = 1",
        "prime_jax.rollout.SamplingConfig.max_new_tokens = 12",
    ]


def tiny_config(tokenizer) -> ModelConfig:
    """A 1-layer model over ``tokenizer``'s vocabulary."""
    return ModelConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_layers=1, num_heads=4,
                       num_kv_heads=2, head_dim=8, max_position_embeddings=128, tie_word_embeddings=True,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id)
