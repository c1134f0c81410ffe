r"""Chapter 05's 2-D toy: three tasks whose solutions are lines in the (theta_1, theta_2) plane.

The picture of Finn et al. (2017), Figure 1 (theta placed so that one inner step reaches each
task's solution), and of Nichol et al. (2018), sec. 5.2 (Reptile converges to the point closest
to all task manifolds), drawn from the closed forms of :mod:`mamlviz.course.toy2d`: the task
lines x_t . theta = y_t, the contours of MAML's post-adaptation loss, the optima of pretrained
(joint training), MAML, FOMAML, Reptile and iMAML (Rajeswaran et al. 2019), and the k-step
arrows theta -> phi_t from MAML's and Reptile's points. Every slider move is a handful of
2 x 2 solves (well under a millisecond of arithmetic), so the sliders update continuously.
"""

from __future__ import annotations

import functools
import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import plotly.graph_objects as go
import torch
from matplotlib.figure import Figure
from torch import Tensor

from mamlviz.course import toy2d
from mamlviz.course.viz.common import Status, color, guarded, readout, slider

TOY2D_CLASS = "mamlviz-toy2d"  # chapter 05's second widget (the browser test finds it by it)
LR_STEP = 0.005
# The largest slider inner_lr: the last step strictly below 2 / max h_t (0.3906 here).
LR_MAX = math.ceil(toy2d.max_inner_lr() / LR_STEP - 1) * LR_STEP
POINTS = ("pretrained", "MAML", "FOMAML", "Reptile", "iMAML", "closest")
ALGORITHM = {"pretrained": "pretrained", "MAML": "maml", "FOMAML": "fomaml",
             "Reptile": "reptile", "iMAML": "imaml"}  # fmt: skip
COLORS = {**{n: color(n) for n in ALGORITHM}, "iMAML": "#8c564b", "closest": "#000000"}
SYMBOLS = {"pretrained": "square", "MAML": "circle", "FOMAML": "diamond", "Reptile": "triangle-up",
           "iMAML": "pentagon", "closest": "x"}  # fmt: skip
LABELS = {"closest": "closest to all lines"}
LINE_COLORS = ("#2ca02c", "#17becf", "#bcbd22")
GRID = 61  # contour grid per axis: 3,721 closed-form evaluations


def task_names() -> list[str]:
    """Legend names of the task lines, with their curvature h_t = 2 |x_t|^2."""
    h = toy2d.curvatures().tolist()
    sharp, flat = h.index(max(h)), h.index(min(h))
    extra = {sharp: ", sharpest", flat: ", flattest"}
    return [f"task {t + 1} (h = {v:.3g}{extra.get(t, '')})" for t, v in enumerate(h)]


def scene(inner_lr: float, inner_steps: int, lam: float) -> dict:
    """Everything the widget and its static twin draw, from the closed forms.

    ``points``: name -> theta [2] (FOMAML's is None where it is a saddle, i.e. some of its
    weights c_t^k are negative); ``phi``: ``"MAML"`` and ``"Reptile"`` -> the adapted phi_t
    [tasks, 2] after ``inner_steps`` steps from that point; ``distances``: name -> distance to
    each task line [tasks]; ``weights``: name -> w_t. Raises ``ValueError`` on an invalid
    setting (e.g. ``inner_lr`` at or above :func:`mamlviz.course.toy2d.max_inner_lr`).
    """
    weights = {n: toy2d.weights(a, inner_lr, inner_steps, lam) for n, a in ALGORITHM.items()}
    points: dict[str, Tensor | None] = {}
    for name, w in weights.items():
        # FOMAML with negative weights has a saddle as fixed point (never reached), possibly
        # far away or undefined: it is not drawn then, and the readout says why.
        saddle = name == "FOMAML" and bool((w <= 0).any())
        points[name] = None if saddle else toy2d.weighted_point(w)
    points["closest"] = toy2d.closest_point()
    phi = {n: toy2d.adapted(points[n], inner_lr, inner_steps) for n in ("MAML", "Reptile")}
    distances = {n: toy2d.distances(p) for n, p in points.items() if p is not None}
    return {"points": points, "phi": phi, "distances": distances, "weights": weights,
            "inner_lr": inner_lr, "inner_steps": inner_steps, "lam": lam}  # fmt: skip


@functools.cache
def window(margin: float = 0.15) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) holding every point and arrow tip over the sliders' whole range (and
    the vertices of the lines' triangle), plus ``margin`` of the span: the frame stays fixed
    while the points move. FOMAML's saddles are left out (they run off to |theta| ~ 40)."""
    x, y = toy2d.X.double(), toy2d.Y.double()
    pts = [torch.linalg.solve(x[[i, j]], y[[i, j]]) for i in range(3) for j in range(i + 1, 3)]
    lrs = torch.arange(LR_STEP, LR_MAX + LR_STEP / 2, LR_STEP).tolist()
    lams = torch.logspace(-1, 1.5, 11).tolist()
    for lr in lrs:
        for k in range(1, 11):
            s = scene(lr, k, 1.0)
            pts += [p for p in s["points"].values() if p is not None]
            pts += [*s["phi"]["MAML"], *s["phi"]["Reptile"]]
    pts += [toy2d.optimum("imaml", 0.1, 1, lam) for lam in lams]
    allp = torch.stack(pts)
    lo, hi = allp.min(0).values, allp.max(0).values
    pad = margin * float((hi - lo).max())
    return float(lo[0]) - pad, float(hi[0]) + pad, float(lo[1]) - pad, float(hi[1]) + pad


def line_segment(t: int, box: tuple[float, float, float, float]) -> tuple[list[float], list[float]]:
    """Two points of task ``t``'s line x_t . theta = y_t, far enough apart to cross ``box``."""
    x, y = toy2d.X.double()[t], float(toy2d.Y[t])
    foot = y * x / x.dot(x)  # the line's point nearest the origin
    d = torch.stack([-x[1], x[0]]) / x.norm()
    cx, cy = (box[0] + box[1]) / 2, (box[2] + box[3]) / 2
    s0 = float(d.dot(torch.tensor([cx, cy], dtype=torch.float64) - foot))
    half = math.hypot(box[1] - box[0], box[3] - box[2])
    a, b = foot + (s0 - half) * d, foot + (s0 + half) * d
    return [float(a[0]), float(b[0])], [float(a[1]), float(b[1])]


def contour_grid(
    inner_lr: float, inner_steps: int, box: tuple[float, float, float, float], n: int = GRID
) -> tuple[list[float], list[float], list[list[float]]]:
    """log10 of MAML's post-adaptation loss on an n x n grid of ``box`` (rows: theta_2)."""
    gx = torch.linspace(box[0], box[1], n, dtype=torch.float64)
    gy = torch.linspace(box[2], box[3], n, dtype=torch.float64)
    theta = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)  # [n(y), n(x), 2]
    z = toy2d.post_adaptation_loss(theta, inner_lr, inner_steps).clamp_min(1e-12).log10()
    return gx.tolist(), gy.tolist(), z.tolist()


def arrows(theta: Tensor, phi: Tensor) -> tuple[list, list]:
    """x and y of segments theta -> phi_t, None-separated (one scatter trace for all)."""
    xs, ys = [], []
    for p in phi:
        xs += [float(theta[0]), float(p[0]), None]
        ys += [float(theta[1]), float(p[1]), None]
    return xs, ys


def scene_html(s: dict) -> str:
    """The readout in words: distances of every point to each line, and Reptile's approach to
    the closest point."""
    d = s["distances"]
    flat = int(toy2d.curvatures().argmin())
    ck = ((1 - s["inner_lr"] * toy2d.curvatures()) ** s["inner_steps"]).tolist()
    rows = []
    for name in POINTS:
        if name not in d:
            rows.append(
                "FOMAML: its weights c_t^k are negative on the sharpest task (inner_lr > 1/h and"
                " k odd), so its fixed point is a saddle, never reached: not drawn"
            )
            continue
        dist = ", ".join(f"{v:.3f}" for v in d[name].tolist())
        rows.append(f"{LABELS.get(name, name)}: distance to the task lines {dist}")
    gap = float((s["points"]["Reptile"] - s["points"]["closest"]).norm())
    gap_pre = float((s["points"]["pretrained"] - s["points"]["closest"]).norm())
    head = (
        f"<b>inner_lr {s['inner_lr']:.3g}, k = {s['inner_steps']} steps, lam {s['lam']:.3g}</b>:"
        f" c_t^k = {', '.join(f'{c:.2f}' for c in ck)}. MAML is"
        f" {float(d['MAML'][flat]):.3f} from the flattest task's line (pretrained"
        f" {float(d['pretrained'][flat]):.3f}); Reptile is {gap:.3f} from the closest point"
        f" (pretrained {gap_pre:.3f}), and reaches it as k grows."
    )
    return head + "<br>" + "<br>".join(rows)


class Toy2DExplorer:
    """Sliders ``inner_lr`` (first: the one the browser test moves), ``inner_steps`` and ``lam``
    over the closed-form optima of the 2-D toy; ``.sliders``, ``.fig``, ``.text``, ``.status``,
    ``.widget`` (the box to display)."""

    def __init__(
        self, inner_lr: float = 0.1, inner_steps: int = 1, lam: float = 1.0, contour: bool = True
    ) -> None:
        self.sliders = {
            "inner_lr": slider("inner_lr", inner_lr, LR_STEP, LR_MAX, LR_STEP,
                               continuous_update=True),
            "inner_steps": slider("inner_steps k", inner_steps, 1, 10, 1, kind="int",
                                  continuous_update=True),
            "lam": slider("lam (iMAML)", lam, -1, 1.5, 0.125, kind="log", continuous_update=True),
        }  # fmt: skip
        self.sliders["inner_lr"].readout_format = ".3f"
        self.box = window()
        self.status, self.text = Status(), readout()
        x0, x1, y0, y1 = self.box
        self.fig = go.FigureWidget(layout=dict(
            width=760, height=560, margin=dict(l=60, r=20, t=40, b=50),
            title="Task lines and where each algorithm puts theta",
            xaxis=dict(title="theta_1", range=[x0, x1], constrain="domain"),
            yaxis=dict(title="theta_2", range=[y0, y1], scaleanchor="x", scaleratio=1,
                       constrain="domain"),
            legend=dict(font=dict(size=10)),
        ))  # fmt: skip
        # trace 0: contour; 1-3: task lines; then the points; then the two arrow sets
        self.fig.add_contour(x=[], y=[], z=[], name="MAML's post-adaptation loss (log10)",
                             showlegend=True, showscale=False, visible=contour, ncontours=18,
                             contours=dict(coloring="lines"), colorscale="Greys",
                             line=dict(width=0.8), opacity=0.5, hoverinfo="skip")  # fmt: skip
        for t, name in enumerate(task_names()):
            xs, ys = line_segment(t, self.box)
            self.fig.add_scatter(x=xs, y=ys, mode="lines", name=name,
                                 line=dict(color=LINE_COLORS[t], width=3))  # fmt: skip
        self.first_point = len(self.fig.data)
        for name in POINTS:
            self.fig.add_scatter(x=[], y=[], mode="markers", name=LABELS.get(name, name),
                                 marker=dict(color=COLORS[name], symbol=SYMBOLS[name], size=13,
                                             line=dict(color="white", width=1)))  # fmt: skip
        self.first_arrow = len(self.fig.data)
        for name in ("MAML", "Reptile"):
            self.fig.add_scatter(
                x=[], y=[], mode="lines+markers", name=f"{name}: k steps to each task",
                line=dict(color=COLORS[name], width=1.5, dash="dot" if name == "Reptile" else None),
                marker=dict(symbol="arrow", angleref="previous", size=[0, 11, 0] * 3,
                            color=COLORS[name]),
            )  # fmt: skip
        for s in self.sliders.values():
            s.observe(guarded(self.status, self.update), names="value")
        top = widgets.HBox([self.sliders["inner_lr"], self.sliders["inner_steps"]])
        parts = [top, self.sliders["lam"], self.text, self.fig, self.status.widget]
        self.widget = widgets.VBox(parts)
        self.widget.add_class(TOY2D_CLASS)
        self._drawn: tuple | None = None
        self.update()

    def values(self) -> tuple[float, int, float]:
        s = self.sliders
        return float(s["inner_lr"].value), int(s["inner_steps"].value), float(s["lam"].value)

    def update(self) -> None:
        """Redraw from the closed forms; a ``ValueError`` (caught by ``guarded``) leaves the
        last valid picture and shows the reason in the status line."""
        inner_lr, k, lam = self.values()
        s = scene(inner_lr, k, lam)  # raises before anything is drawn
        with self.fig.batch_update():
            if self._drawn != (inner_lr, k):  # lam moves only iMAML: skip the contour
                gx, gy, z = contour_grid(inner_lr, k, self.box)
                self.fig.data[0].update(x=gx, y=gy, z=z)
            for i, name in enumerate(POINTS):
                p = s["points"][name]
                trace = self.fig.data[self.first_point + i]
                trace.x, trace.y = ([float(p[0])], [float(p[1])]) if p is not None else ([], [])
            for i, name in enumerate(("MAML", "Reptile")):
                xs, ys = arrows(s["points"][name], s["phi"][name])
                self.fig.data[self.first_arrow + i].update(x=xs, y=ys)
        self._drawn = (inner_lr, k)
        self.scene = s
        self.text.value = scene_html(s)
        self.status.ok("closed forms of mamlviz.course.toy2d; drag a slider")


def plot_toy2d(inner_lr: float = 0.1, inner_steps: int = 1, lam: float = 1.0) -> Figure:
    """Static twin of :class:`Toy2DExplorer` (matplotlib): the same lines, contours, points and
    k-step arrows at one setting."""
    s, box = scene(inner_lr, inner_steps, lam), window()
    fig, ax = plt.subplots(figsize=(8.6, 5.2))
    gx, gy, z = contour_grid(inner_lr, inner_steps, box)
    ax.contour(gx, gy, z, levels=18, colors="grey", linewidths=0.6, alpha=0.6)
    ax.plot([], [], color="grey", lw=0.6, label="MAML's post-adaptation loss (log10)")
    for t, name in enumerate(task_names()):
        ax.plot(*line_segment(t, box), color=LINE_COLORS[t], lw=2.5, label=name)
    for name in ("MAML", "Reptile"):
        theta, phi = s["points"][name], s["phi"][name]
        start = (float(theta[0]), float(theta[1]))
        for p in phi:
            ax.annotate("", xy=(float(p[0]), float(p[1])), xytext=start,
                        arrowprops=dict(arrowstyle="->", color=COLORS[name], lw=1.2,
                                        ls=":" if name == "Reptile" else "-"))  # fmt: skip
        ax.plot([], [], color=COLORS[name], ls=":" if name == "Reptile" else "-",
                label=f"{name}: k steps to each task")  # fmt: skip
    marker = {"square": "s", "circle": "o", "diamond": "D", "triangle-up": "^", "pentagon": "p",
              "x": "X"}  # fmt: skip
    for name in POINTS:
        p = s["points"][name]
        if p is not None:
            ax.plot(float(p[0]), float(p[1]), marker[SYMBOLS[name]], color=COLORS[name], ms=9,
                    mec="white", ls="none", label=LABELS.get(name, name))  # fmt: skip
    ax.set(xlim=box[:2], ylim=box[2:], xlabel="theta_1", ylabel="theta_2", aspect="equal",
           title=f"inner_lr {inner_lr:g}, k = {inner_steps}, lam {lam:g}")  # fmt: skip
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig
