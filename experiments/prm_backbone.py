"""An explicit PRM's backbone as a causal-LM directory, to continue training it on new data.

    python experiments/prm_backbone.py runs/eprm_kinds_w2/model runs/eprm_kinds_w2_backbone

``prime_jax.train_reward`` starts an explicit PRM from ``ExplicitPrm.backbone`` (a model directory
of the same vocabulary); a saved PRM (``Qwen2ForTokenClassification``) holds a ``score`` head the
causal-LM loader refuses. This copies the directory without the ``score.*`` tensors and names the
architecture ``Qwen2ForCausalLM`` (the embedding is tied, so no LM head is missing); the new run
puts a fresh head on the trained blocks. Used for the staged explicit-PRM recipe of issue 27
(experiments/LOG.md, "Step verifiers on held-out error kinds").
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil

from safetensors.numpy import load_file, save_file


def strip_head(source: pathlib.Path, target: pathlib.Path) -> list[str]:
    """Copy ``source`` to ``target`` without its score head; returns the dropped tensor names."""
    config = json.loads((source / "config.json").read_text())
    if config.get("architectures") != ["Qwen2ForTokenClassification"]:
        raise SystemExit(f"{source}/config.json: architectures {config.get('architectures')}, expected a saved "
                         "explicit PRM (['Qwen2ForTokenClassification'])")
    if not config.get("tie_word_embeddings"):
        raise SystemExit(f"{source}/config.json: untied embeddings; the PRM has no LM head to give the backbone")
    shutil.copytree(source, target, dirs_exist_ok=True)
    tensors = load_file(str(source / "model.safetensors"))
    dropped = sorted(name for name in tensors if name.startswith("score."))
    save_file({k: v for k, v in tensors.items() if k not in dropped}, str(target / "model.safetensors"),
              metadata={"format": "np"})
    config["architectures"] = ["Qwen2ForCausalLM"]
    for key in ("num_labels", "id2label", "label2id"):
        config.pop(key, None)
    (target / "config.json").write_text(json.dumps(config, indent=2))
    return dropped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("source", type=pathlib.Path, help="a saved explicit PRM (its model/ directory)")
    parser.add_argument("target", type=pathlib.Path, help="output directory (causal-LM format)")
    args = parser.parse_args()
    dropped = strip_head(args.source, args.target)
    print(f"wrote {args.target} (dropped {dropped})")


if __name__ == "__main__":
    main()
