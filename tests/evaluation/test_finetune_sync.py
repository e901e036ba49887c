"""Fine-tuning classifier, few-shot subsets, video-level accuracy and sync evaluation."""

import numpy as np
import pytest
import tensorflow as tf
from sync_reference import numpy_sync_accuracy

from avts_tf import train
from avts_tf.data import pipeline
from avts_tf.data.manifest import Manifest
from avts_tf.errors import UserError
from avts_tf.evaluation import checkpoint, finetune, records_io, sync


def test_choose_per_class_is_seeded_and_balanced():
    labels = np.array([0, 1, 0, 1, 0, -1, 2])
    chosen = records_io.choose_per_class(labels, 2, seed=3)
    assert np.bincount(labels[chosen]).tolist() == [2, 2, 1]
    assert chosen.tolist() == records_io.choose_per_class(labels, 2, seed=3).tolist()


def test_few_shot_subset_keeps_other_splits(tiny_prepared, tmp_path):
    subset = records_io.few_shot_subset(tiny_prepared, tmp_path / "s", 1, "train", seed=0)
    full, part = Manifest.read(tiny_prepared), Manifest.read(subset)
    assert part.num_records("train") == 2 == len(part.records("train"))
    assert records_io.count_records(subset, ["test"]) == 2
    assert part.records("test") == full.records("test") and part.labels == full.labels
    assert part.subset_of == str(tiny_prepared) and part.config == full.config
    labels = [int(r["label_index"]) for r in records_io.parsed_records(subset, ["train"])]
    assert sorted(labels) == [0, 1]
    assert len(pipeline.shard_files(subset, "test")) == 1


def test_classifier_with_and_without_fusion(tiny_run):
    video = checkpoint.load_tower(tiny_run, "video")
    audio = checkpoint.load_tower(tiny_run, "audio")
    model = finetune.classifier(video, 3)
    assert model({"video": tf.zeros([2, 4, 32, 32, 3])}).shape == (2, 3)
    fused = finetune.classifier(video, 3, audio)
    logits = fused({"video": tf.zeros([2, 4, 32, 32, 3]), "audio": tf.zeros([2, 24, 16, 1])})
    assert logits.shape == (2, 3)
    assert fused.get_layer("fusion").output.shape[-1] == 16


@pytest.mark.slow
def test_finetune_and_video_accuracy(tiny_prepared, tiny_run):
    video = checkpoint.load_tower(tiny_run, "video")
    audio = checkpoint.load_tower(tiny_run, "audio")
    spec = checkpoint.clip_spec_for(tiny_run, video, audio)
    finetune.check_audio_shape(audio, spec, Manifest.read(tiny_prepared).fps)
    model = finetune.classifier(video, 2, audio)
    before = [w.numpy().copy() for w in video.trainable_weights]
    head = model.get_layer("classifier").kernel.numpy().copy()
    data = finetune.train_clips(tiny_prepared, spec, 4, fusion=True)

    def tower_moved():
        return any(
            not np.allclose(a, b.numpy())
            for a, b in zip(before, video.trainable_weights, strict=True)
        )

    finetune.fit(model, data, steps=0, head_steps=1, verbose=0)  # Classifier only.
    assert not tower_moved()
    assert not np.allclose(head, model.get_layer("classifier").kernel.numpy())
    history = finetune.fit(model, data, steps=2, verbose=0)
    assert len(history.history["loss"]) == 1
    assert tower_moved()
    result = finetune.video_accuracy(model, tiny_prepared, spec, clips_per_video=3, fusion=True)
    # Recomputed with NumPy: softmax of each test clip, averaged per video, then argmax.
    probs, videos, labels = [], [], []
    for batch in pipeline.eval_dataset(tiny_prepared, 32, spec=spec, clips_per_video=3):
        logits = model({"video": batch["video"], "audio": batch["audio"]}).numpy()
        probs.append(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True))
        videos.append(batch["video_id"].numpy())
        labels.append(batch["label"].numpy())
    probs, videos, labels = np.concatenate(probs), np.concatenate(videos), np.concatenate(labels)
    assert len(videos) == 6 and (labels >= 0).all()  # 2 labelled test videos x 3 clips.
    hits = [
        np.argmax(probs[videos == v].mean(0)) == labels[videos == v][0] for v in np.unique(videos)
    ]
    assert result == {
        "accuracy": np.mean(hits),
        "videos": 2,
        "clip_accuracy": np.mean(np.argmax(probs, -1) == labels),
    }


def test_audio_shape_mismatch_is_reported(tiny_run):
    audio = checkpoint.load_tower(tiny_run, "audio")
    spec = checkpoint.clip_spec_for(tiny_run, audio_tower=audio)
    with pytest.raises(UserError, match="prepare the data at the pretraining fps"):
        finetune.check_audio_shape(audio, spec, 4.0)


def test_sync_accuracy_per_negative_kind(tiny_prepared, tiny_run):
    results = sync.evaluate_sync(
        tiny_run, tiny_prepared, "test", ("easy", "hard"), clips_per_video=4
    )
    assert {"sync_accuracy", "sync_accuracy_hard", "pairs_easy", "pairs_hard"} <= set(results)
    assert results["pairs_easy"] == 8  # 2 videos x 4 clips, each against the other video.
    assert results["pairs_hard"] == 8  # 3 s videos hold a non-overlapping 0.5 s window.
    # The run's towers on the same clips, scored with NumPy (margin 1: threshold 0.5).
    model, spec = sync.sync_model(tiny_run, ("easy", "hard"))
    data = pipeline.eval_dataset(
        tiny_prepared,
        32,
        task=sync.clip_cutter(tiny_run, ("easy", "hard")),
        spec=spec,
        split="test",
        clips_per_video=4,
    )
    for kind, key in (("easy", "sync_accuracy"), ("hard", "sync_accuracy_hard")):
        reference = numpy_sync_accuracy(model.video_tower, model.audio_tower, data, kind=kind)
        assert reference["pairs"] == results[f"pairs_{kind}"]
        assert results[key] == pytest.approx(reference["accuracy"], abs=1e-6), kind
    with pytest.raises(UserError, match="unknown negative kind"):
        sync.evaluate_sync(tiny_run, tiny_prepared, kinds=("medium",))
    with pytest.raises(UserError, match="splits present"):
        sync.evaluate_sync(tiny_run, tiny_prepared, split="val")


def test_a_fusion_head_is_read_beside_towers_of_stock_layers(tmp_path, tiny_prepared):
    """A user's tower of stock ``Conv3D`` is loaded with the fast layer, which the run's
    checkpoint does not lay out: loading the head raised ``ValueError`` (a traceback)."""
    import keras
    import tiny

    from avts_tf.models import AVTSModel
    from avts_tf.tasks.sync.objectives import FusionSync

    keras.utils.set_random_seed(2)
    trained = AVTSModel(tiny.tiny_video_tower(), tiny.tiny_audio_tower(), FusionSync())
    tiny.write_finished_run(tmp_path, tiny_prepared, trained)
    model, _ = sync.sync_model(tmp_path, ("easy",))
    assert type(model.video_tower.layers[1]) is not keras.layers.Conv3D  # the fast one
    for got, want in ((model, trained), (model.objective, trained.objective)):
        assert len(got.weights) == len(want.weights)
        for a, b in zip(got.weights, want.weights, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)


def test_clip_cutter_takes_the_sync_task_of_a_multi_task_run(tmp_path, tiny_prepared):
    import tiny

    from avts_tf.tasks.multi import MultiTask
    from avts_tf.tasks.sync.objectives import ContrastiveSync
    from avts_tf.tasks.sync.samplers import HardNegativeSampler
    from avts_tf.tasks.temporal.task import TemporalContrastive

    hard = HardNegativeSampler(min_gap_s=0.25)
    tiny.describe_run(
        tmp_path,
        tiny_prepared,
        task=MultiTask(
            {
                "sync": ContrastiveSync(margin=0.7, negatives={"hard": hard}),
                "temporal": TemporalContrastive(),
            }
        ),
    )
    cutter = sync.clip_cutter(tmp_path, ("easy", "hard", "super_hard"))
    assert type(cutter) is ContrastiveSync
    assert cutter.margin == 0.7 and cutter.eval_kinds == ("easy", "hard", "super_hard")
    assert type(cutter.negatives["hard"]) is HardNegativeSampler
    assert cutter.negatives["hard"].min_gap_s == 0.25
    assert set(cutter.negatives) == {"hard", "super_hard"}
    tiny.describe_run(tmp_path, tiny_prepared, task=TemporalContrastive())
    with pytest.raises(
        UserError,
        match=r"\(TemporalContrastive\) is not a synchronization "
        r"task; give the model_dir of a run trained with",
    ):
        sync.clip_cutter(tmp_path, ("easy",))


def test_scratch_towers_come_from_a_training_recipe():
    """``--init scratch --gin_file``: the recipe binds ``train.Model``, read by ``train.Recipe``."""
    recipe = train.Recipe(("quickstart",), ("backbones.mc3_18.width = 8",))
    settings = finetune.Settings(init="scratch", fusion=True, recipe=recipe)
    video, audio, spec = finetune.initial_towers(settings, 8.0)
    assert spec.crop_size == 32 and spec.log_mel.mel_bins == 40
    assert tuple(video.inputs[0].shape[1:]) == spec.video_shape()
    assert tuple(audio.inputs[0].shape[1:]) == spec.audio_shape(8.0)
    assert recipe.clip_spec() == spec and train.Recipe().clip_spec() == pipeline.ClipSpec()
    with pytest.raises(UserError, match="--init scratch needs --arch CHECKPOINT or --gin_file"):
        finetune.initial_towers(finetune.Settings(init="scratch"), 8.0)
    with pytest.raises(UserError, match="does not set train.Model.video_tower"):
        train.Recipe(("quickstart",), ("train.Model.video_tower = None",)).towers(8.0)
