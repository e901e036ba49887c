"""Convert a torchvision video ResNet checkpoint (.pth) to an avts_tf tower (.keras).

``avts-import-torchvision`` (or ``python tools/import_torchvision.py`` from a checkout):

    python tools/import_torchvision.py --arch r2plus1d_18 \
        --checkpoint r2plus1d_18-91a641e6.pth --output r2plus1d_18.keras \
        [--input_shape 16,112,112] [--no_head] [--normalize]

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

import argparse
from pathlib import Path

from avts_tf.evaluation import cli

ARCHS = ("r3d_18", "mc3_18", "r2plus1d_18")


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.OneLineParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", required=True, choices=ARCHS, help="torchvision architecture")
    parser.add_argument("--checkpoint", required=True, help="the .pth state_dict")
    parser.add_argument("--output", required=True, help="the .keras file to write")
    parser.add_argument("--input_shape", default="16,112,112",
                        help="T,H,W of the tower's input ('none' for a dynamic dimension)")
    parser.add_argument("--no_head", action="store_true", help="drop the fc classifier")
    parser.add_argument("--normalize", action="store_true",
                        help="add torchvision's Kinetics normalisation: input frames in [0, 1]")
    return parser.parse_args(argv)


def parse_shape(text: str) -> tuple:
    from avts_tf.evaluation.errors import BadInput

    parts = [p.strip().lower() for p in text.split(",")]
    try:
        shape = tuple(None if p == "none" else int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or any(d is not None and d < 1 for d in shape):
        raise BadInput(f"--input_shape must be T,H,W (positive integers or none), got {text!r}")
    return shape


def _main() -> None:
    args = parse_args()
    cli.quiet_logs()
    from avts_tf.evaluation.errors import BadInput

    shape = parse_shape(args.input_shape)
    if Path(args.output).suffix != ".keras":
        raise BadInput(f"--output must end in .keras, got {args.output}")
    from avts_tf.backbones import torchvision_import

    try:
        model = torchvision_import.load_torchvision(
            args.arch, args.checkpoint, shape, include_head=not args.no_head,
            normalize=args.normalize,
        )
    except torchvision_import.TorchvisionImportError as err:
        raise BadInput(str(err)) from None
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    model.save(args.output)
    head = "fc" in [layer.name for layer in model.layers]
    print(f"wrote {args.output}: {args.arch}, input {tuple(model.inputs[0].shape[1:])}, "
          f"output {tuple(model.outputs[0].shape[1:])} ({'logits' if head else 'features'})"
          f"{', Kinetics normalisation' if args.normalize else ''}")


def main() -> None:
    """Console-script entry point."""
    cli.run_tool(_main)


if __name__ == "__main__":
    main()
