"""The geo-tree region map: regions as rectangles coloured by WER over US state outlines.

State outlines come from the PyPI package ``bokeh-sampledata`` (simplified US Census Bureau
TIGER/Line polygons, offline). The map shows the lower 48 states; unbounded region edges are
clipped to that extent, and regions reaching Alaska or Hawaii are listed in a note instead of
distorting the map.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from fairaudit.render import charts
from fairaudit.render.charts import BOTTOM, INK, TOP, plt, png_data_uri, short

ATTRIBUTION = "State outlines: US Census Bureau via bokeh-sampledata"
#: Map extent (degrees): the lower 48 states with a small margin.
LON_RANGE = (-125.5, -66.0)
LAT_RANGE = (24.0, 50.0)
#: Rough boxes of the parts of the US outside the map, to say which regions reach them.
OUTSIDE = {
    "Alaska": ((51.0, 72.0), (-180.0, -129.5)),
    "Hawaii": ((18.5, 22.5), (-160.5, -154.5)),
    "Puerto Rico": ((17.8, 18.6), (-67.4, -65.2)),
}
NOT_LOWER_48 = {"AK", "HI", "PR"}


@lru_cache(maxsize=1)
def lower48_states():
    """GeoDataFrame of the lower 48 states and DC (NAD83 longitude/latitude degrees)."""
    import geopandas
    from bokeh_sampledata.us_states import records

    rows = [r for r in records() if r["code"] not in NOT_LOWER_48]
    return geopandas.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4269")


def _bounds(region: dict) -> tuple[float, float, float, float]:
    """(lat_low, lat_high, lon_low, lon_high) with unbounded edges as infinities."""
    inf = float("inf")
    lat_low = region.get("latitude_min")
    lat_high = region.get("latitude_max")
    lon_low = region.get("longitude_min")
    lon_high = region.get("longitude_max")
    return (
        -inf if lat_low is None else float(lat_low),
        inf if lat_high is None else float(lat_high),
        -inf if lon_low is None else float(lon_low),
        inf if lon_high is None else float(lon_high),
    )


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float] | None:
    low, high = max(a[0], b[0]), min(a[1], b[1])
    return (low, high) if high > low else None


def outside_notes(regions: Sequence[dict], descriptions: dict[str, str]) -> list[str]:
    """Sentences naming regions that lie outside the map or also cover Alaska, Hawaii or Puerto Rico."""
    notes = []
    for region in regions:
        lat_low, lat_high, lon_low, lon_high = _bounds(region)
        on_map = _overlap((lat_low, lat_high), LAT_RANGE) and _overlap((lon_low, lon_high), LON_RANGE)
        places = [
            name for name, (lat, lon) in OUTSIDE.items()
            if _overlap((lat_low, lat_high), lat) and _overlap((lon_low, lon_high), lon)
        ]
        if not places and on_map:
            continue
        rid = str(region.get("id"))
        text = f"{rid} ({descriptions.get(rid, '')})"
        where = " and ".join(places) if places else "areas outside the lower 48 states"
        notes.append(f"{text} lies outside the map; it covers {where}." if not on_map
                     else f"{text} also covers {where}, outside the map.")
    return notes


def region_map(regions: Sequence[dict], cohorts: Sequence[dict], bottom: Sequence[str], top: Sequence[str],
               min_report_speakers: int) -> str | None:
    """PNG data URI of the regions over the lower 48 states, coloured by WER (% of words)."""
    if not regions:
        return None
    by_id = {c["id"]: c for c in cohorts}
    wers = [100 * c["wer"] for c in cohorts if not c.get("suppressed") and c.get("wer") is not None]
    if wers:
        low, high = min(wers), max(wers)
        if high - low < 1e-9:
            low, high = low - 0.5, high + 0.5
    else:
        low, high = 0.0, 1.0
    import matplotlib

    cmap = matplotlib.colormaps["YlOrRd"]
    norm = matplotlib.colors.Normalize(vmin=low, vmax=high)
    with plt.rc_context(charts.FONT):
        fig, ax = plt.subplots(figsize=(9.6, 5.2))
        ax.set_facecolor("#f8fafc")
        lower48_states().plot(ax=ax, facecolor="#eef1f4", edgecolor="none", zorder=1)
        labels = []
        for region in regions:
            rid = str(region.get("id"))
            lat_low, lat_high, lon_low, lon_high = _bounds(region)
            lat = _overlap((lat_low, lat_high), LAT_RANGE)
            lon = _overlap((lon_low, lon_high), LON_RANGE)
            if not lat or not lon:
                continue
            cohort = by_id.get(rid, {})
            suppressed = bool(cohort.get("suppressed")) or cohort.get("wer") is None
            face = "#d1d5db" if suppressed else cmap(norm(100 * cohort["wer"]))
            is_bottom, is_top = rid in bottom, rid in top
            ax.add_patch(plt.Rectangle((lon[0], lat[0]), lon[1] - lon[0], lat[1] - lat[0], facecolor=face,
                                       alpha=0.82, edgecolor="white", lw=0.8, hatch="///" if suppressed else None,
                                       zorder=2))
            if is_bottom or is_top:
                ax.add_patch(plt.Rectangle((lon[0], lat[0]), lon[1] - lon[0], lat[1] - lat[0], fill=False,
                                           edgecolor=BOTTOM if is_bottom else TOP, lw=2.6 if is_bottom else 1.8,
                                           ls="-" if is_bottom else "--", zorder=5))
            area = (lon[1] - lon[0]) * (lat[1] - lat[0])
            labels.append(((lon[0] + lon[1]) / 2, (lat[0] + lat[1]) / 2, rid, is_bottom, is_top, area))
        lower48_states().boundary.plot(ax=ax, color="#4b5563", lw=0.45, zorder=3)
        placed: list[tuple[float, float]] = []
        # Bottom and top first, then larger regions; skip a label that would collide with one
        # already drawn (the table lists every region).
        for x, y, rid, is_bottom, is_top, area in sorted(labels, key=lambda item: (not item[3], not item[4], -item[5])):
            if not (is_bottom or is_top) and (area < 6.0 or any(abs(x - px) < 6.0 and abs(y - py) < 1.1 for px, py in placed)):
                continue
            placed.append((x, y))
            text = short(rid, 14) + (" (bottom)" if is_bottom else " (top)" if is_top else "")
            ax.text(x, y, text, ha="center", va="center", fontsize=7.5, color=INK, zorder=6,
                    fontweight="bold" if (is_bottom or is_top) else "normal",
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8})
        ax.set_xlim(*LON_RANGE)
        ax.set_ylim(*LAT_RANGE)
        ax.set_aspect(1.25)  # ~1 / cos(37 deg): keeps the lower 48 from looking stretched
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("")
        ax.set_ylabel("")
        for spine in ax.spines.values():
            spine.set_visible(False)
        mappable = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
        bar = fig.colorbar(mappable, ax=ax, fraction=0.03, pad=0.01)
        bar.set_label("region WER (% of reference words)")
        bar.outline.set_visible(False)
        ax.text(0.0, -0.02, ATTRIBUTION + f". Hatched: suppressed (fewer than {min_report_speakers} speakers).",
                transform=ax.transAxes, fontsize=7, color=charts.MUTED, va="top")
        fig.tight_layout()
        return png_data_uri(fig, quantize=False)
