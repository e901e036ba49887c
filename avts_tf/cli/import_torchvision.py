r"""Convert a torchvision video ResNet checkpoint (.pth) to an avts_tf tower (.keras).

    avts-import-torchvision --arch=r2plus1d_18 \
        --checkpoint=r2plus1d_18-91a641e6.pth --output=r2plus1d_18.keras \
        [--input_shape=16,112,112] [--no_head] [--normalize]

(``python tools/import_torchvision.py`` takes the same flags, from a checkout.)

``--arch`` is ``r3d_18``, ``mc3_18`` or ``r2plus1d_18`` (``torchvision.models.video``).
``--checkpoint`` is a file written by ``torch.save(model.state_dict(), path)`` (or a dict
holding it under ``state_dict`` or ``model``); it is read with
``torch.load(weights_only=True)``, so torch must be installed
(``pip install "avts_tf[torch]"``). The tower built is avts_tf's tower of that name,
which pads as PyTorch does, so with the checkpoint's ``fc`` as its ``fc`` head it returns
torchvision's logits for the same clip, channels last: ``(B, T, H, W, 3)`` for PyTorch's
``(B, 3, T, H, W)``.

``--input_shape T,H,W`` (default 16,112,112, the Kinetics clips of torchvision's
weights; ``none`` for a dynamic dimension) sets the tower's input. ``--no_head`` drops
``fc`` (the tower returns 512 pooled features). ``--normalize`` puts torchvision's
Kinetics normalisation (mean 0.43216, 0.394666, 0.37645; std 0.22803, 0.22145, 0.216989)
in front, so the tower takes frames in [0, 1] as the avts_tf pipeline yields them;
without it, inputs must be normalised as for torchvision's model.

Unknown or missing keys and shape mismatches exit 2 with one ``error:`` line naming them.
"""

from pathlib import Path

from absl import flags

from avts_tf.cli import app
from avts_tf.cli import flags as shared

ARCHS = ("r3d_18", "mc3_18", "r2plus1d_18")

flags.DEFINE_enum("arch", None, list(ARCHS), "torchvision architecture.", required=True)
shared.define_run(
    "The .pth state_dict.",
    alias=None,
    check=(
        lambda p: p is None or Path(p).is_file(),
        "does not exist; give the .pth file torch.save wrote",
    ),
)
shared.define_output(
    "The .keras file to write.",
    required=True,
    check=(lambda p: p is None or Path(p).suffix == ".keras", "must end in .keras"),
)
flags.DEFINE_string(
    "input_shape", "16,112,112", "T,H,W of the tower's input ('none' for a dynamic dimension)."
)
flags.DEFINE_bool("no_head", False, "Drop the fc classifier.")
flags.DEFINE_bool(
    "normalize", False, "Add torchvision's Kinetics normalisation: input frames in [0, 1]."
)
FLAGS = flags.FLAGS


def parse_shape(text: str) -> tuple:
    from avts_tf.errors import UserError

    parts = [p.strip().lower() for p in text.split(",")]
    try:
        shape = tuple(None if p == "none" else int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or any(d is not None and d < 1 for d in shape):
        raise UserError(f"--input_shape must be T,H,W (positive integers or none), got {text!r}")
    return shape


def _main(argv: list[str]) -> None:
    app.no_positional(argv)
    app.quiet_logs()
    from avts_tf.errors import UserError

    shape = parse_shape(FLAGS.input_shape)
    from avts_tf.backbones import torchvision_import

    try:
        model = torchvision_import.load_torchvision(
            FLAGS.arch,
            FLAGS.checkpoint,
            shape,
            include_head=not FLAGS.no_head,
            normalize=FLAGS.normalize,
        )
    except torchvision_import.TorchvisionImportError as err:
        raise UserError(str(err)) from None
    Path(FLAGS.output).parent.mkdir(parents=True, exist_ok=True)
    model.save(FLAGS.output)
    head = "fc" in [layer.name for layer in model.layers]
    print(
        f"wrote {FLAGS.output}: {FLAGS.arch}, input {tuple(model.inputs[0].shape[1:])}, "
        f"output {tuple(model.outputs[0].shape[1:])} ({'logits' if head else 'features'})"
        f"{', Kinetics normalisation' if FLAGS.normalize else ''}"
    )


main = app.entry_point(_main)


if __name__ == "__main__":
    main()
