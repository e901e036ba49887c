"""Train AVTS with plain Keras: no gin, no tools, just ``compile()`` and ``fit()``.

    python examples/fit_example.py --steps 200

Builds tiny towers from the backbone registry, reads the built-in synthetic dataset
(generated and ingested on first use), trains with ``model.fit`` and evaluates sync
accuracy on held-out videos.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402

from avts_tf.backbones import audio, video_resnet  # noqa: E402,F401  (registers towers)
from avts_tf.data import pipeline  # noqa: E402
from avts_tf.data.audio_features import LogMelSpec  # noqa: E402
from avts_tf.data.ingestion.datasets import synthetic_dataset  # noqa: E402
from avts_tf.data.manifest import Manifest  # noqa: E402
from avts_tf.models import AVTSModel  # noqa: E402
from avts_tf.registry import BACKBONES  # noqa: E402
from avts_tf.tasks.sync.objectives import ContrastiveSync  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--num_videos", type=int, default=64)
    parser.add_argument("--cache_dir", default=None, help="Synthetic dataset cache folder.")
    parser.add_argument("--save_dir", default=None,
                        help="Folder for the trained towers (*.keras) and eval.json.")
    args = parser.parse_args()

    data_dir = synthetic_dataset(cache_dir=args.cache_dir, num_videos=args.num_videos)
    spec = pipeline.ClipSpec(
        num_frames=8, crop_size=32, log_mel=LogMelSpec(mel_bins=40, window_s=0.04, hop_s=0.02)
    )
    fps = Manifest.read(data_dir).fps

    video_tower = BACKBONES.build(
        "mc3_18", input_shape=spec.video_shape(), width=16, depths=(1, 1, 1, 1), embedding_dim=64
    )
    audio_tower = BACKBONES.build(
        "avts_audio_vgg", input_shape=spec.audio_shape(fps), width=16, depths=(1, 1, 1, 1),
        embedding_dim=64,
    )
    model = AVTSModel(video_tower, audio_tower, ContrastiveSync(margin=1.0))
    model.compile(optimizer=keras.optimizers.Adam(2e-3))

    # The task cuts its own examples (here: clips, in-sync audio and easy negatives).
    task = model.objective
    train = pipeline.train_dataset(data_dir, args.batch_size, task=task, spec=spec)
    model.fit(train, steps_per_epoch=args.steps, epochs=1, verbose=2)
    test = pipeline.eval_dataset(data_dir, 32, task=task, spec=spec)
    results = model.evaluate(test, return_dict=True)
    if args.save_dir:
        save_dir = Path(args.save_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
        video_tower.save(save_dir / "video_tower.keras")
        audio_tower.save(save_dir / "audio_tower.keras")
        (save_dir / "eval.json").write_text(json.dumps({k: float(v) for k, v in results.items()}))
    print(f"sync_accuracy: {results['sync_accuracy']:.3f}")


if __name__ == "__main__":
    main()
