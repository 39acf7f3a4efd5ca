"""The swap-exposure experiment (paper Fig. 4; Li & DiCarlo, Science 2008) on any trained network.

Monkey IT neurons lose their selectivity between a preferred object P and a non-preferred object N at a
retinal position where, across a saccade, P turns into N (and N into P), and keep it at a position where
objects stay themselves. As in the official notebook (``notebooks/4 - Comparison to experimental data.ipynb``
of fmi-basel/latent-predictive-learning):

- an image is placed at the top, centre or bottom slot (0, 6, 12) of a canvas 13 images tall, the rest
  background (the notebook's zeros on normalised images: the images' mean colour here);
- a new linear readout takes the network's final feature maps average-pooled to a 13 x 1 grid (one cell per
  image slot of the canvas, columns averaged), all channels of all cells, and first learns with the LPL
  objective from pairs of views at independent random slots (Adam), which makes it position-tolerant;
- objects come in six groups of k images: pairs (P1, N1) swap at the top and stay themselves at the bottom,
  (P2, N2) the other way round, (PC, NC) are controls, never shown during exposure. Each exposure is one SGD
  step on the eight temporal pairs of ``exposure_schedule``: the response to the peripheral view is pulled
  toward the (stop-gradient) response to what the saccade brings to the centre;
- selectivity is the response to P minus the response to N, where per pair and readout unit P is the object
  the unit responds to more at the centre before exposure; averaged over pairs and all units, at the swap,
  non-swap and (controls, all slots) control positions, after 0..400 exposures.

Differences from the notebook: the network is frozen (the notebook also trains it, at learning rate 1e-7),
so features are computed once; the pooled features are standardised (mean and std over the readout's
training canvases), since networks other than the notebook's LPL-trained one can have features of any scale
(a random network's vary by ~1e-4, and the readout then learns to code the slot, anti-correlating its
responses across slots, instead of becoming position-tolerant); the Hebbian and decorrelation terms are those
of ``LPLObjective``, averaged over the pairs' peripheral and centre responses, where the notebook takes them
over all twelve groups of responses together.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpl.analysis.probes import standardise
from lpl.config import check_fields, option, resolve_device
from lpl.data.images import ImageSet, to_unit_float
from lpl.objective import LPLObjective
from lpl.validation import LPLError, validate_inputs

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Images (B, C, H, W) float in [0, 1] -> the final block's feature maps (B, C', H', W').
Extractor = Callable[[Tensor], Tensor]

CANVAS_SLOTS = 13
SLOTS = (0, 6, 12)  # top, centre, bottom: the positions objects are shown at
CENTRE = 6
ROLES = ("P1", "N1", "P2", "N2", "PC", "NC")  # order of the object groups in ``run_swap_experiment``'s input
SWAP_SLOT = {"1": 0, "2": 12}  # pairs (P1, N1) swap at the top, (P2, N2) at the bottom
NON_SWAP_SLOT = {"1": 12, "2": 0}
POSITIONS = {"swap": "Swap position", "non_swap": "Non-swap position", "control": "Control objects"}  # figure panels

# Li & DiCarlo (2008), digitised in the official notebook: selectivity P - N in spikes/s after these exposures,
# and the responses to P and N at the swap position, normalised.
MONKEY_EXPOSURES = (0, 100, 200, 300, 400)
MONKEY_SELECTIVITY = {"swap": (10.78, 8.85, 8.36, 6.33, 6.11),
                      "non_swap": (9.26, 8.29, 8.52, 9.08, 8.41),
                      "control": (4.15, 4.94, 3.00, 4.21, 3.76)}
MONKEY_RESPONSE = {"preferred": (1.259, 1.181, 1.164, 1.089, 1.048),
                   "non_preferred": (0.628, 0.673, 0.704, 0.728, 0.732)}

# The verdict: selectivity falls at the swap position when its last value is at most SWAP_FALLS x its value
# before exposure, and holds at the non-swap position when it stays at least NON_SWAP_HOLDS x (monkeys: 0.57
# and 0.91).
SWAP_FALLS = 0.8
NON_SWAP_HOLDS = 0.85


class Exposure(NamedTuple):
    """A temporal pair: object ``shown`` at the peripheral ``slot``, then object ``seen`` at the centre."""

    shown: str
    slot: int
    seen: str


@dataclass(frozen=True)
class SwapSettings:
    """The protocol's settings; the defaults are the notebook's (LPL objective 1, 1, 10 with means over units)
    except ``readout_steps`` (the notebook: 10 epochs of the unlabelled STL-10 images, several thousand steps).

    ``readout_steps`` Adam steps of ``readout_batch`` pairs (learning rate ``readout_lr``) teach the readout
    position tolerance; then ``exposures`` SGD steps (``exposure_lr``) on the schedule. Weight decay applies
    to weights, not biases. ``units``: readout width (default: the network's channels, as the notebook).
    """

    exposures: int = 400
    readout_steps: int = 1000
    readout_batch: int = 128
    readout_lr: float = 1e-3
    exposure_lr: float = 2e-2
    weight_decay: float = 1.5e-6
    units: int | None = None
    seed: int = 0
    objective: LPLObjective = LPLObjective()


def place(images: Tensor, slot: int, background: float | Tensor = 0.0) -> Tensor:
    """Images (B, C, H, W) at ``slot`` (0..12, top to bottom) of a canvas (B, C, 13 H, W).

    Image rows ``slot * H .. slot * H + H - 1`` of the canvas; the rest is ``background``, one value or one
    per channel (C,).
    """
    if not 0 <= slot < CANVAS_SLOTS:
        raise LPLError(f"slot {slot} is off the canvas; use 0..{CANVAS_SLOTS - 1} (top to bottom)")
    b, c, h, w = images.shape
    fill = torch.as_tensor(background, dtype=images.dtype, device=images.device).reshape(-1, 1, 1)
    canvas = fill.expand(c, CANVAS_SLOTS * h, w).repeat(b, 1, 1, 1)
    canvas[:, :, slot * h:(slot + 1) * h] = images
    return canvas


def exposure_schedule() -> tuple[Exposure, ...]:
    """The eight temporal pairs of one exposure: per swapped set, each object at its non-swap slot followed by
    itself at the centre, and at its swap slot followed by the other object. Controls are never shown."""
    pairs = []
    for s in SWAP_SLOT:
        p, n = f"P{s}", f"N{s}"
        pairs += [Exposure(p, NON_SWAP_SLOT[s], p), Exposure(n, NON_SWAP_SLOT[s], n),
                  Exposure(p, SWAP_SLOT[s], n), Exposure(n, SWAP_SLOT[s], p)]
    return tuple(pairs)


def canvas_features(extractor: Extractor, images: Tensor, background: Tensor, batch_size: int = 64,
                    device: torch.device | str = "cpu") -> Tensor:
    """Features (B, 3, C' * 13) of images (B, C, H, W) at each slot of ``SLOTS``: the extractor's feature
    maps of the canvas average-pooled to 13 x 1, flattened channel-major (as ``nn.Flatten`` does)."""
    out = []
    with torch.no_grad():
        for slot in SLOTS:
            chunks = []
            for start in range(0, len(images), batch_size):
                maps = extractor(place(images[start:start + batch_size], slot, background).to(device))
                if maps.ndim != 4:
                    raise LPLError(f"the extractor returned shape {tuple(maps.shape)}; it must return the final "
                                   "block's feature maps (B, C, H, W), not pooled vectors")
                chunks.append(F.adaptive_avg_pool2d(maps.float(), (CANVAS_SLOTS, 1)).flatten(1).cpu())
            out.append(torch.cat(chunks))
    return torch.stack(out, dim=1)


def _readout(features: int, units: int, generator: torch.Generator) -> nn.Linear:
    """``nn.Linear`` with its default initialisation drawn from ``generator``."""
    layer = nn.Linear(features, units)
    bound = 1.0 / math.sqrt(features)
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        layer.bias.uniform_(-bound, bound, generator=generator)
    return layer


def _groups(layer: nn.Linear, weight_decay: float) -> list[dict[str, Any]]:
    """Optimiser parameter groups: weight decay on the weights only, as the notebook."""
    return [{"params": [layer.weight], "weight_decay": weight_decay}, {"params": [layer.bias], "weight_decay": 0.0}]


def train_readout(readout: nn.Linear, first: Tensor, second: Tensor, settings: SwapSettings,
                  generator: torch.Generator) -> list[float]:
    """Position tolerance: Adam steps on the LPL loss of two views (``first``, ``second``: (B, 3, F) canvas
    features of the same images or of two views of them), each at a random slot drawn per image and view.
    The predictive term reaches both views, as the notebook's ``mse_loss`` does. Returns the loss per step."""
    objective = replace(settings.objective, stop_gradient=False)
    optimiser = torch.optim.Adam(_groups(readout, settings.weight_decay), lr=settings.readout_lr)
    losses = []
    for _ in range(settings.readout_steps):
        rows = torch.randint(len(first), (settings.readout_batch,), generator=generator)
        slots = torch.randint(len(SLOTS), (2, settings.readout_batch), generator=generator)
        loss = objective.loss(readout(first[rows, slots[0]]), readout(second[rows, slots[1]]))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


def preferred(responses: Tensor) -> Tensor:
    """Whether P is preferred (3, k, U), per set (1, 2, control), pair and unit: P's response at the centre is
    at least N's, in ``responses`` (6, 3, k, U) (groups in ``ROLES`` order, slots in ``SLOTS`` order)."""
    centre = responses[:, SLOTS.index(CENTRE)]
    return centre[0::2] >= centre[1::2]


def selectivity(responses: Tensor, p_preferred: Tensor) -> dict[str, float]:
    """Mean response to the preferred minus the non-preferred object of each pair, over pairs and units.

    ``responses`` (6, 3, k, U) and ``p_preferred`` (3, k, U) as in ``preferred``. ``swap``: set 1 at the top
    and set 2 at the bottom; ``non_swap``: the other way round; ``centre``: both sets at the centre;
    ``control``: the controls at all three slots. ``preferred`` and ``non_preferred``: the mean responses to
    each at the swap positions.
    """
    p, n = responses[0::2], responses[1::2]  # (3 sets, 3 slots, k, U)
    pref = p_preferred[:, None]
    delta = torch.where(pref, p - n, n - p)

    def at(values: Tensor, slots: Mapping[str, int]) -> float:
        """Mean of ``values`` of the swapped sets at each set's slot."""
        return float(torch.stack([values[i, SLOTS.index(slots[s])] for i, s in enumerate(SWAP_SLOT)]).mean())

    best, worst = torch.where(pref, p, n), torch.where(pref, n, p)
    return {"swap": at(delta, SWAP_SLOT), "non_swap": at(delta, NON_SWAP_SLOT),
            "centre": at(delta, dict.fromkeys(SWAP_SLOT, CENTRE)), "control": float(delta[2].mean()),
            "preferred": at(best, SWAP_SLOT), "non_preferred": at(worst, SWAP_SLOT)}


def _check_objects(objects: Tensor) -> int:
    validate_inputs(objects, name="objects")
    if objects.ndim != 4 or len(objects) % len(ROLES):
        raise LPLError(f"objects have shape {tuple(objects.shape)}; give (6 k, C, H, W) images: k each of "
                       f"{', '.join(ROLES)}, in that order")
    return len(objects) // len(ROLES)


def run_swap_experiment(extractor: Extractor, objects: Tensor, readout_images: Tensor,
                        readout_views: Tensor | None = None, settings: SwapSettings = SwapSettings(),
                        device: torch.device | str = "cpu") -> dict[str, Any]:
    """The whole protocol on a frozen network; returns a JSON-ready dict.

    ``objects`` (6 k, C, H, W) float in [0, 1]: k images each of P1, N1, P2, N2, PC, NC (``ROLES``; P and N
    are names, preference is per unit). ``readout_images`` (B, C, H, W) teach the readout position tolerance,
    paired with ``readout_views`` (other views of the same images, e.g. next frames) or with themselves.

    Returns ``exposures`` (0..E), ``model`` (each key of ``selectivity`` per exposure count), ``monkey``
    (``exposures`` and the Li & DiCarlo curves), ``position_response`` (before exposure, the least-squares gain
    of the readout's responses at top, centre and bottom on those at the centre: 1 when it responds alike at
    every slot, 0 when unrelated; the notebook plots mean ratios instead), the loss curves of both phases,
    ``pairs`` (k), ``units`` and ``settings``.
    """
    k = _check_objects(objects)
    validate_inputs(readout_images, name="readout images")
    second = readout_images if readout_views is None else readout_views
    if second.shape != readout_images.shape:
        raise LPLError(f"readout views have shape {tuple(second.shape)}, the readout images "
                       f"{tuple(readout_images.shape)}; give one view per image")
    validate_inputs(second, name="readout views")
    background = torch.cat((objects, readout_images, second)).mean(dim=(0, 2, 3))
    first = canvas_features(extractor, readout_images, background, device=device)  # (B, 3, F)
    views = first if readout_views is None else torch.cat((first, canvas_features(extractor, second, background,
                                                                                  device=device)))
    table = canvas_features(extractor, objects, background, device=device)  # (6 k, 3, F)
    # Standardised by the readout's training canvases (every slot, both views); the objects' alike.
    fitted, standard, _ = standardise(views.flatten(0, 1), table.flatten(0, 1))
    fitted, table = fitted.reshape(views.shape), standard.reshape(table.shape)
    first_views, second_views = fitted[:len(first)], fitted[-len(first):]
    generator = torch.Generator().manual_seed(settings.seed)
    units = settings.units or table.shape[2] // CANVAS_SLOTS
    readout = _readout(table.shape[2], units, generator)
    readout_losses = train_readout(readout, first_views, second_views, settings, generator)

    grouped = table.reshape(len(ROLES), k, len(SLOTS), -1).transpose(1, 2)  # (6, 3, k, F)
    with torch.no_grad():
        centre = readout(grouped[:, SLOTS.index(CENTRE)])
        position = [float((readout(grouped[:, i]) * centre).sum() / centre.square().sum()) for i in range(len(SLOTS))]
    curves, exposure_losses = expose(readout, grouped, settings)
    monkey = {"exposures": list(MONKEY_EXPOSURES), **{key: list(v) for key, v in MONKEY_SELECTIVITY.items()},
              **{key: list(v) for key, v in MONKEY_RESPONSE.items()}}
    return {"exposures": list(range(settings.exposures + 1)), "model": curves, "monkey": monkey,
            "position_response": position, "readout_losses": readout_losses, "exposure_losses": exposure_losses,
            "pairs": k, "units": units, "settings": asdict(settings)}


def expose(readout: nn.Linear, grouped: Tensor, settings: SwapSettings) -> tuple[dict[str, list[float]], list[float]]:
    """The exposure phase: ``settings.exposures`` SGD steps of ``readout`` on the pairs of ``exposure_schedule``.

    ``grouped`` (6, 3, k, F): features of the object groups (``ROLES`` order) at each slot (``SLOTS`` order).
    Returns every value of ``selectivity`` after 0..E exposures, with the preference of each pair and unit
    fixed before the first, and the loss of each step.
    """
    schedule = exposure_schedule()
    shown = torch.cat([grouped[ROLES.index(e.shown), SLOTS.index(e.slot)] for e in schedule])
    seen = torch.cat([grouped[ROLES.index(e.seen), SLOTS.index(CENTRE)] for e in schedule])
    objective = replace(settings.objective, stop_gradient=True)
    optimiser = torch.optim.SGD(_groups(readout, settings.weight_decay), lr=settings.exposure_lr)
    with torch.no_grad():
        responses = readout(grouped)
    p_preferred = preferred(responses)
    curves = {key: [value] for key, value in selectivity(responses, p_preferred).items()}
    losses = []
    for _ in range(settings.exposures):
        loss = objective.loss(readout(seen), readout(shown))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        with torch.no_grad():
            responses = readout(grouped)
        for key, value in selectivity(responses, p_preferred).items():
            curves[key].append(value)
    return curves, losses


def relative(values: Sequence[float]) -> list[float]:
    """``values`` divided by the first (before exposure); NaN throughout when the first is not positive."""
    first = values[0]
    return [v / first if first > 0 else math.nan for v in values]


@dataclass(frozen=True)
class SwapVerdict:
    """Whether selectivity fell at the swap position and held at the non-swap position (None: undefined,
    no selectivity there before exposure), and a sentence saying so with the thresholds."""

    swap_falls: bool | None
    non_swap_holds: bool | None
    text: str


def swap_verdict(curves: Mapping[str, Sequence[float]]) -> SwapVerdict:
    """Judge ``curves`` (``swap`` and ``non_swap`` selectivity over exposures: ``results["model"]`` or
    ``results["monkey"]``) by their last value relative to the first: falls at ``SWAP_FALLS`` or below,
    holds at ``NON_SWAP_HOLDS`` or above."""
    swap, non_swap = curves["swap"], curves["non_swap"]
    if swap[0] <= 0 or non_swap[0] <= 0:
        return SwapVerdict(None, None, f"No selectivity before exposure (P - N: {swap[0]:.3g} at the swap position, "
                                       f"{non_swap[0]:.3g} at the non-swap position): the readout does not carry "
                                       "the centre's preference to the periphery, so the experiment says nothing.")
    swap_ratio, non_swap_ratio = swap[-1] / swap[0], non_swap[-1] / non_swap[0]
    falls, holds = swap_ratio <= SWAP_FALLS, non_swap_ratio >= NON_SWAP_HOLDS
    outcome = ("as in the monkeys" if falls and holds else
               "unlike the monkeys" if not (falls or holds) else "only partly as in the monkeys")
    return SwapVerdict(falls, holds, (
        f"Selectivity at the swap position went to {100 * swap_ratio:.0f}% of its value before exposure "
        f"({'falls' if falls else 'does not fall'}: at most {100 * SWAP_FALLS:.0f}% counts as falling); at the "
        f"non-swap position to {100 * non_swap_ratio:.0f}% ({'holds' if holds else 'does not hold'}: at least "
        f"{100 * NON_SWAP_HOLDS:.0f}% counts as holding); {outcome} (swap {_percent_kept('swap')}, "
        f"non-swap {_percent_kept('non_swap')})."))


def _percent_kept(position: str) -> str:
    return f"{100 * relative(MONKEY_SELECTIVITY[position])[-1]:.0f}%"


MODEL_COLOURS = ("#BB5566", "#4477AA", "#228833")


def swap_figure(results: Mapping[str, Any], models: Mapping[str, Mapping[str, Any]] | None = None) -> Figure:
    """Model beside monkey: selectivity relative to before exposure at the swap and non-swap positions and for
    the controls, against the number of exposures (``results`` of ``run_swap_experiment``; ``models``: several
    such results by label, drawn side by side, e.g. the trained network and its initialisation)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.2), layout="constrained")
    axes = fig.subplots(1, len(POSITIONS), sharey=True)
    models = models or {"model (LPL readout)": results}
    monkey = results["monkey"]
    for ax, (key, title) in zip(axes, POSITIONS.items()):
        for (label, model), colour in zip(models.items(), MODEL_COLOURS):
            ax.plot(model["exposures"], relative(model["model"][key]), color=colour, label=label)
        ax.plot(monkey["exposures"], relative(monkey[key]), "o--", color="black", label="monkey IT (Li & DiCarlo)")
        ax.axhline(1.0, color="gray", linestyle=":", linewidth=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("swap exposures", fontsize=9)
    axes[0].set_ylabel("selectivity P - N\n(relative to before exposure)", fontsize=9)
    axes[0].legend(fontsize=8)
    return fig


# ---------------------------------------------------------------- lpl swap-exposure

@dataclass
class SwapConfig:
    """The swap-exposure experiment on a trained deep run, and on the same network at initialisation."""

    run_dir: str = option("outputs", "the training output folder of a deep run", positional=True)
    name: str | None = option(None, "run name (default: the folder's only run)")
    dataset: str | None = option(None, "images for objects and readout (default: the run's own data set)")
    image_size: int | None = option(None, "image folders: resize to N x N (default: the run's)")
    pairs: int = option(8, "images per object group (P1, N1, P2, N2, PC, NC: one class each)")
    readout_images: int = option(2048, "training images that teach the readout position tolerance")
    readout_steps: int = option(SwapSettings.readout_steps, "Adam steps of the readout's LPL training")
    exposures: int = option(SwapSettings.exposures, "swap exposures (SGD steps on the temporal pairs)")
    seed: int = option(0, "random seed (readout weights, batches, which images)")
    device: str = option("auto", "torch device: auto (CUDA if there is one), cpu, cuda, cuda:1")
    output: str | None = option(None, "folder for results.json, swap_exposure.png and report.md "
                                "(default: <run_dir>/swap)")

    def __post_init__(self) -> None:
        check_fields(self)
        self.device = resolve_device(self.device)


def _objects(data: ImageSet, pairs: int, seed: int) -> Tensor:
    """``pairs`` images of each of six classes (random, fixed by ``seed``), in ``ROLES`` order."""
    classes = torch.unique(data.labels)
    if len(classes) < len(ROLES):
        raise LPLError(f"the swap experiment needs images of {len(ROLES)} classes (one per object group), the data "
                       f"set has {len(classes)}; give another --dataset")
    generator = torch.Generator().manual_seed(seed)
    chosen = classes[torch.randperm(len(classes), generator=generator)[:len(ROLES)]]
    groups = []
    for label in chosen:
        index = torch.nonzero(data.labels == label).flatten()
        if len(index) < pairs:
            raise LPLError(f"class {int(label)} has {len(index)} test images, fewer than --pairs {pairs}")
        groups.append(index[torch.randperm(len(index), generator=generator)[:pairs]])
    return to_unit_float(data.images[torch.cat(groups)])


def _final_maps(net: nn.Module) -> Extractor:
    """The extractor of a conv network: its last block's feature maps."""
    return lambda x: net(x)[-1]


def swap_exposure(config: SwapConfig) -> int:
    """Run the protocol on the trained network and on its initialisation; write results, figure and report."""
    from lpl.analysis.document import Block, Bullets, Figure, Heading, Paragraph, to_markdown
    from lpl.data import load_splits
    from lpl.io import atomic_write_bytes, atomic_write_json, atomic_write_text
    from lpl.load import load

    networks = {stage: load(config.run_dir, config.name, stage, config.device) for stage in ("after", "before")}
    record = cast(dict[str, Any], networks["after"].record)
    if record["network"]["kind"] != "conv":
        raise LPLError("the swap experiment needs a conv network's feature maps; pass a train-deep run")
    saved = record["config"]
    train, test = load_splits(config.dataset or saved["dataset"], saved.get("data_dir"), False,
                              image_size=config.image_size if config.dataset else saved.get("image_size"))
    objects = _objects(test, config.pairs, config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    first = torch.randperm(len(train), generator=generator)[:config.readout_images]
    starts = train.pair_starts()
    if len(starts):  # frames and their next frames, as LPL learns from time
        first = starts[torch.randint(len(starts), (config.readout_images,), generator=generator)]
    views = train.images[first + 1] if len(starts) else None
    settings = SwapSettings(exposures=config.exposures, readout_steps=config.readout_steps, seed=config.seed)
    results = {}
    for stage, label in (("after", "trained"), ("before", "initialisation")):
        results[label] = run_swap_experiment(_final_maps(networks[stage]), objects, to_unit_float(train.images[first]),
                                             None if views is None else to_unit_float(views), settings, config.device)
    out = Path(config.output or Path(config.run_dir) / "swap")
    atomic_write_json({"run": str(config.run_dir), "name": record.get("name"), "objective": record["objective"],
                       "readout_pairs": "next frames" if views is not None else "the same images",
                       **results}, out / "results.json")
    figure = swap_figure(results["trained"], {f"trained ({record['objective']['name']})": results["trained"],
                                              "the same network at initialisation": results["initialisation"]})
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(buffer.getvalue(), out / "swap_exposure.png")
    verdicts = {label: swap_verdict(r["model"]).text for label, r in results.items()}
    blocks: list[Block] = [Heading(f"Swap exposure (Li & DiCarlo 2008) on `{config.run_dir}`", 1),
              Paragraph(f"**Trained network:** {verdicts['trained']}"),
              Paragraph(f"**The same network at initialisation** (the readout learns with LPL in both): "
                        f"{verdicts['initialisation']}"),
              Figure(out / "swap_exposure.png", "Selectivity (P - N) relative to before exposure, against the number "
                     "of swap exposures: the trained network, its initialisation and the monkeys."),
              Bullets((f"objects: {config.pairs} test images of each of six classes; readout: {config.readout_images} "
                       f"training images, {'each with its next frame' if views is not None else 'paired with itself'}"
                       f", {config.readout_steps} steps; {config.exposures} exposures; device {config.device}",
                       f"monkey IT (Li & DiCarlo 2008): selectivity fell to {_percent_kept('swap')} of its value "
                       f"after 400 exposures at the swap position and stayed at {_percent_kept('non_swap')} at the "
                       "non-swap position"))]
    path = atomic_write_text(to_markdown(blocks), out / "report.md")
    print(f"{verdicts['trained']}\nreport: {path}")
    return 0
