"""Gin bindings on top of quickstart.gin that make a whole run take about a minute on CPU."""

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
    "prime_jax.rl.config.PrimeConfig.prm_mini_batch = 8",
    "prime_jax.rl.config.PrimeConfig.policy_mini_batch = 8",
    "prime_jax.rollout.SamplingConfig.max_new_tokens = 12",
    "prime_jax.rl.trainer.train.eval_batch_prompts = 8",
    "prime_jax.rl.trainer.train.eval_every = 2",
    "prime_jax.rl.trainer.train.checkpoint_every = 1",
    "prime_jax.rl.trainer.train.verifier_workers = 1",
    "prime_jax.models.ModelConfig.hidden_size = 32",
    "prime_jax.models.ModelConfig.intermediate_size = 64",
    "prime_jax.models.ModelConfig.num_layers = 1",
    "prime_jax.models.ModelConfig.head_dim = 8",
]
