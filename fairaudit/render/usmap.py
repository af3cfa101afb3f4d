"""The region map of the geographic methods: cells clipped to land, coloured by WER.

Two kinds of cells are drawn, read from a partition's ``details``:

- ``regions`` (geo-tree): axis-aligned boxes of latitude/longitude (``None`` = unbounded);
- ``windows`` (geo-scan): circles of ``radius_km`` around (``centre_lat``, ``centre_lon``), or
  ellipses with an ``elongation`` and a long-axis ``bearing_deg``, drawn point by point at the
  great-circle distance of the window's boundary in each direction from the centre.

Every cell is intersected with the land of the lower 48 states (the union of the state
polygons of the PyPI package ``bokeh-sampledata``: simplified US Census Bureau TIGER/Line,
offline), so a region never spreads over the ocean, Canada or Mexico. Cells reaching Alaska,
Hawaii or Puerto Rico are named in notes instead of distorting the map.

Privacy (SPEC 6): a suppressed cohort is not drawn at all, neither filled nor outlined nor
labelled, and the legend lists only what is drawn. Which shapes are drawn is decided by
:func:`map_shapes` alone; :func:`draw_map` draws exactly those, so tests can check them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from fairaudit.geodata.distance import EARTH_RADIUS_KM
from fairaudit.geodata.windows import boundary_km
from fairaudit.render import charts
from fairaudit.render.charts import BOTTOM, INK, TOP, plt, png_data_uri, short

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

ATTRIBUTION = "State outlines: US Census Bureau via bokeh-sampledata"
#: Map extent (degrees): the lower 48 states with a small margin.
LON_RANGE = (-125.5, -66.0)
LAT_RANGE = (24.0, 50.0)
#: Rough boxes of the parts of the US outside the map, to say which cells reach them.
OUTSIDE = {
    "Alaska": ((51.0, 72.0), (-180.0, -129.5)),
    "Hawaii": ((18.5, 22.5), (-160.5, -154.5)),
    "Puerto Rico": ((17.8, 18.6), (-67.4, -65.2)),
}
NOT_LOWER_48 = {"AK", "HI", "PR"}
#: Mean Earth radius (km, IUGG), as in the haversine formula.
#: Vertices of a drawn window circle.
CIRCLE_POINTS = 180
#: Fill colours of the cells, from low to high WER.
COLOUR_MAP = "YlOrRd"
#: The bottom cohort's outline: dark, thick, over a white halo so it shows on any fill.
BOTTOM_EDGE = "#111827"
LAND = "#e5e7eb"
SEA = "#f8fafc"
#: With at most this many cells every cell is labelled (where labels do not collide).
MAX_ALL_LABELS = 8


@dataclass(frozen=True)
class MapShape:
    """One cell as drawn: its cohort id, land-clipped geometry (lon/lat degrees), WER and role."""

    id: str
    geometry: BaseGeometry  # never empty
    wer: float  # fraction of reference words
    role: str  # "bottom", "top" or ""


@lru_cache(maxsize=1)
def lower48_states():
    """GeoDataFrame of the lower 48 states and DC (NAD83 longitude/latitude degrees)."""
    import geopandas
    from bokeh_sampledata.us_states import records

    rows = [r for r in records() if r["code"] not in NOT_LOWER_48]
    return geopandas.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4269")


@lru_cache(maxsize=1)
def land():
    """The land of the lower 48 states and DC: the union of the state polygons."""
    return lower48_states().union_all()


def _edge(value: float | None, default: float) -> float:
    """A region bound in degrees, ``default`` when unbounded (None)."""
    return default if value is None else float(value)


def region_geometry(region: Mapping) -> BaseGeometry:
    """The box of a geo-tree region (unbounded edges at the edge of the globe)."""
    from shapely.geometry import box

    lat_low = max(_edge(region.get("latitude_min"), -90.0), -90.0)
    lat_high = min(_edge(region.get("latitude_max"), 90.0), 90.0)
    lon_low = max(_edge(region.get("longitude_min"), -180.0), -180.0)
    lon_high = min(_edge(region.get("longitude_max"), 180.0), 180.0)
    if lat_high <= lat_low or lon_high <= lon_low:
        from shapely.geometry import Polygon

        return Polygon()
    return box(lon_low, lat_low, lon_high, lat_high)


def destination(lat: float, lon: float, bearing_deg: float, distance_km: float) -> tuple[float, float]:
    """(lat, lon) reached from (lat, lon) after ``distance_km`` along a great circle at a bearing."""
    phi1, lambda1 = math.radians(lat), math.radians(lon)
    theta, delta = math.radians(bearing_deg), distance_km / EARTH_RADIUS_KM
    phi2 = math.asin(math.sin(phi1) * math.cos(delta) + math.cos(phi1) * math.sin(delta) * math.cos(theta))
    lambda2 = lambda1 + math.atan2(
        math.sin(theta) * math.sin(delta) * math.cos(phi1), math.cos(delta) - math.sin(phi1) * math.sin(phi2)
    )
    return math.degrees(phi2), (math.degrees(lambda2) + 540.0) % 360.0 - 180.0


def window_geometry(window: Mapping, points: int = CIRCLE_POINTS) -> BaseGeometry:
    """The outline of a geo-scan window (circle or ellipse): ``points`` vertices, each at the
    great-circle distance of the window's boundary in its direction from the centre.

    Longitudes are unwrapped along the outline, so a large window that crosses the date line stays
    one polygon; one that goes round a pole is closed through that pole; copies shifted by 360
    degrees cover land on either side."""
    from shapely import affinity
    from shapely.geometry import Polygon
    from shapely.ops import unary_union
    from shapely.validation import make_valid

    lat, lon, radius = float(window["centre_lat"]), float(window["centre_lon"]), float(window["radius_km"])
    if radius <= 0:
        return Polygon()
    elongation, bearing = float(window.get("elongation", 1.0)), float(window.get("bearing_deg", 0.0))
    azimuths = [360.0 * k / points for k in range(points)]
    ring = [destination(lat, lon, a, boundary_km(radius, elongation, bearing, a)) for a in azimuths]
    lats = [y for y, _ in ring]
    lons = [lon + _turn(ring[0][1] - lon)]
    for (_, previous), (_, here) in zip(ring, ring[1:]):
        lons.append(lons[-1] + _turn(here - previous))
    winding = lons[-1] + _turn(ring[0][1] - ring[-1][1]) - lons[0]
    outline = list(zip(lons, lats))
    if abs(winding) > 180.0:  # the outline goes round a pole: close it through that pole
        pole = 90.0 if lat >= 0 else -90.0
        outline += [(lons[-1], pole), (lons[0], pole)]
    shape = make_valid(Polygon(outline))
    if -180.0 <= min(lons) and max(lons) < 180.0 and abs(winding) <= 180.0:
        return shape  # an ordinary window: one polygon
    return unary_union([shape] + [affinity.translate(shape, xoff=shift) for shift in (-360.0, 360.0)])


def _turn(degrees: float) -> float:
    """A longitude difference brought into [-180, 180)."""
    return (degrees + 180.0) % 360.0 - 180.0


def cell_geometries(details: Mapping) -> dict[str, BaseGeometry]:
    """Unclipped geometry of every drawable cell of a partition's details, by cohort id."""
    cells: dict[str, BaseGeometry] = {}
    for region in details.get("regions") or []:
        cells[str(region.get("id"))] = region_geometry(region)
    for window in details.get("windows") or []:
        cells[str(window.get("id"))] = window_geometry(window)
    return cells


def has_map(details: Mapping) -> bool:
    """Whether a method's details hold cells to draw on the map (regions or windows)."""
    return bool(details.get("regions") or details.get("windows"))


def _reported(cohorts: Sequence[Mapping]) -> dict[str, Mapping]:
    """Cohorts that may be shown (not suppressed, with a WER), by id."""
    return {str(c["id"]): c for c in cohorts if not c.get("suppressed") and c.get("wer") is not None}


def _role(cid: str, bottom: Sequence[str], top: Sequence[str]) -> str:
    """'bottom', 'top' (only a single top cohort is outlined) or ''."""
    if cid in bottom:
        return "bottom"
    return "top" if len(top) == 1 and cid in top else ""


def map_shapes(
    details: Mapping, cohorts: Sequence[Mapping], bottom: Sequence[str], top: Sequence[str]
) -> list[MapShape]:
    """The shapes to draw: reported cells clipped to land, bottom cells last (drawn on top)."""
    reported = _reported(cohorts)
    shapes = []
    for cid, geometry in cell_geometries(details).items():
        cohort = reported.get(cid)
        if cohort is None or geometry.is_empty:
            continue  # suppressed, unknown or degenerate: nothing of it is drawn
        clipped = geometry.intersection(land())
        if clipped.is_empty or clipped.area <= 0:
            continue
        shapes.append(MapShape(cid, clipped, float(cohort["wer"]), _role(cid, bottom, top)))
    order = {"": 0, "top": 1, "bottom": 2}
    return sorted(shapes, key=lambda s: (order[s.role], s.wer))


def wer_range(cohorts: Sequence[Mapping]) -> tuple[float, float]:
    """Colour-scale limits (% of words) over the reported cohorts' WERs."""
    wers = [100 * float(c["wer"]) for c in _reported(cohorts).values()]
    if not wers:
        return 0.0, 1.0
    low, high = min(wers), max(wers)
    return (low - 0.5, high + 0.5) if high - low < 1e-9 else (low, high)


def legend_entries(shapes: Sequence[MapShape]) -> list[tuple[str, str]]:
    """(role, text) of each legend entry: only roles of shapes that are drawn."""
    entries = []
    for role, name in (("bottom", "bottom cohort"), ("top", "top cohort")):
        ids = [s.id for s in sorted(shapes, key=lambda s: -s.wer) if s.role == role]
        if ids:
            entries.append((role, f"{name}: {short(', '.join(ids), 40)}"))
    return entries


def outside_notes(details: Mapping, cohorts: Sequence[Mapping], descriptions: Mapping[str, str]) -> list[str]:
    """Sentences naming reported cells off the map's land or also covering Alaska, Hawaii or Puerto Rico."""
    from shapely.geometry import box

    reported = _reported(cohorts)
    notes = []
    for cid, geometry in cell_geometries(details).items():
        if cid not in reported or geometry.is_empty:
            continue
        on_map = geometry.intersection(land()).area > 0
        places = [
            name
            for name, ((lat0, lat1), (lon0, lon1)) in OUTSIDE.items()
            if geometry.intersects(box(lon0, lat0, lon1, lat1))
        ]
        if on_map and not places:
            continue
        description = descriptions.get(cid, "")
        text = f"{cid} ({description})" if description and description != cid else cid
        where = " and ".join(places) if places else "areas outside the lower 48 states"
        notes.append(
            f"{text} lies outside the map; it covers {where}."
            if not on_map
            else f"{text} also covers {where}, outside the map."
        )
    return notes


def _polygons(geometry) -> list:
    """The polygons of a (multi)polygon or geometry collection."""
    if geometry.geom_type == "Polygon":
        return [geometry]
    if hasattr(geometry, "geoms"):
        return [p for g in geometry.geoms for p in _polygons(g)]
    return []


def _patch(geometry, **style):
    """A matplotlib patch of a shapely (multi)polygon, holes included."""
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path

    vertices, codes = [], []
    for polygon in _polygons(geometry):
        for ring in [polygon.exterior, *polygon.interiors]:
            points = list(ring.coords)
            vertices += points
            codes += [Path.MOVETO] + [Path.LINETO] * (len(points) - 2) + [Path.CLOSEPOLY]
    return PathPatch(Path(vertices, codes), **style)


def _draw_cells(ax, shapes: Sequence[MapShape], cmap, norm) -> None:
    """Fill every shape by WER, then outline the top cohort and the bottom cohort (added as plain
    artists: the map's limits are fixed, so matplotlib need not scan every curve for data limits)."""
    from shapely import union_all

    for shape in shapes:
        ax.add_artist(
            _patch(shape.geometry, facecolor=cmap(norm(100 * shape.wer)), edgecolor="white", lw=0.7, zorder=2)
        )
    top = [s.geometry for s in shapes if s.role == "top"]
    if top:
        ax.add_artist(_patch(union_all(top), fill=False, edgecolor=TOP, lw=2.0, ls=(0, (4, 2)), zorder=5))
    bottom = [s.geometry for s in shapes if s.role == "bottom"]
    if bottom:
        outline = union_all(bottom)
        ax.add_artist(_patch(outline, fill=False, edgecolor="white", lw=6.0, zorder=6))
        ax.add_artist(_patch(outline, fill=False, edgecolor=BOTTOM_EDGE, lw=3.0, zorder=7))


def _label_position(geometry) -> tuple[float, float, str]:
    """Where a cell's label goes: inside a large cell, beside a small one (so it hides nothing)."""
    minx, _, maxx, _ = geometry.bounds
    point = geometry.representative_point()
    if maxx - minx < 4.0:
        return maxx + 0.35, point.y, "left"
    return point.x, point.y, "center"


def _draw_labels(ax, shapes: Sequence[MapShape]) -> None:
    """Label bottom and top cells, then others where a label fits (the table lists every cell)."""
    placed: list[tuple[float, float]] = []
    few = len(shapes) <= MAX_ALL_LABELS
    for shape in sorted(shapes, key=lambda s: (s.role != "bottom", s.role != "top", -s.geometry.area)):
        x, y, align = _label_position(shape.geometry)
        marked = bool(shape.role)
        crowded = any(abs(x - px) < 6.0 and abs(y - py) < 1.1 for px, py in placed)
        if not marked and (crowded or not (few or shape.geometry.area >= 6.0)):
            continue
        placed.append((x, y))
        colour = BOTTOM if shape.role == "bottom" else TOP if shape.role == "top" else INK
        ax.text(
            x,
            y,
            short(shape.id, 14),
            ha=align,
            va="center",
            fontsize=7.5,
            color=colour,
            zorder=8,
            fontweight="bold" if marked else "normal",
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": colour if marked else "none", "alpha": 0.9},
        )


def _draw_legend(ax, shapes: Sequence[MapShape]) -> None:
    """A legend of the outlines actually drawn (nothing when no cohort is outlined)."""
    from matplotlib.lines import Line2D

    style: dict[str, dict[str, Any]] = {
        "bottom": {"color": BOTTOM_EDGE, "lw": 3.0},
        "top": {"color": TOP, "lw": 2.0, "ls": (0, (4, 2))},
    }
    handles = [Line2D([], [], label=text, **style[role]) for role, text in legend_entries(shapes)]
    if handles:
        ax.legend(handles=handles, loc="lower left", fontsize=8, frameon=True, framealpha=0.92, edgecolor="#d1d5db")


def map_figure(shapes: Sequence[MapShape], limits: tuple[float, float], colour_label: str):
    """The matplotlib figure of ``shapes`` over the lower 48 states, with a WER colour bar."""
    import matplotlib

    cmap = matplotlib.colormaps[COLOUR_MAP]
    norm = matplotlib.colors.Normalize(vmin=limits[0], vmax=limits[1])
    with plt.rc_context(charts.FONT):
        fig, ax = plt.subplots(figsize=(9.6, 5.4))
        ax.set_facecolor(SEA)
        ax.add_artist(_patch(land(), facecolor=LAND, edgecolor="none", zorder=1))
        _draw_cells(ax, shapes, cmap, norm)
        lower48_states().boundary.plot(ax=ax, color="#6b7280", lw=0.4, zorder=3)
        _draw_labels(ax, shapes)
        _draw_legend(ax, shapes)
        ax.set_xlim(*LON_RANGE)
        ax.set_ylim(*LAT_RANGE)
        ax.set_aspect(1.25)  # ~1 / cos(37 deg): keeps the lower 48 from looking stretched
        ax.set_axis_off()
        bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, fraction=0.03, pad=0.01)
        bar.set_label(colour_label)
        bar.outline.set_visible(False)
        ax.text(0.0, -0.01, ATTRIBUTION + ".", transform=ax.transAxes, fontsize=7, color=charts.MUTED, va="top")
        fig.tight_layout()
    return fig


def draw_map(
    shapes: Sequence[MapShape], limits: tuple[float, float], colour_label: str = "WER (% of reference words)"
) -> str | None:
    """PNG data URI of the map of ``shapes`` (None when there is nothing to draw)."""
    if not shapes:
        return None
    return png_data_uri(map_figure(shapes, limits, colour_label), quantize=False)
