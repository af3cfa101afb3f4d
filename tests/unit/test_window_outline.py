"""The map's outline of a geo-scan window holds exactly the places the membership rule puts in it,
also for windows that cross the date line or go round a pole (large ellipses and circles)."""

import numpy as np
import pytest
from shapely.geometry import Point

from fairaudit.geodata.distance import haversine_km
from fairaudit.render.usmap import map_shapes, window_geometry

WINDOWS = [
    (33.625, -84.375, 300.0, 3.0, 45.0),  # an ordinary ellipse
    (37.625, -121.875, 3000.0, 3.0, 135.0),  # crosses the date line westward
    (47.625, -122.375, 3000.0, 3.0, 90.0),  # crosses the date line
    (61.125, -149.875, 5000.0, 1.0, 0.0),  # a circle round the North Pole
]


def rule_inside(lat0, lon0, radius, elongation, bearing, lat, lon):
    """The published rule, from the haversine distance and initial bearing (independent of the code)."""
    d = haversine_km(lat0, lon0, lat, lon)
    p1, p2, dl = np.radians(lat0), np.radians(lat), np.radians(lon - lon0)
    azimuth = np.arctan2(np.sin(dl) * np.cos(p2), np.cos(p1) * np.sin(p2) - np.sin(p1) * np.cos(p2) * np.cos(dl))
    turn = azimuth - np.radians(bearing)
    return (d * np.cos(turn)) ** 2 / elongation + (d * np.sin(turn)) ** 2 * elongation <= radius**2


@pytest.mark.parametrize("lat0, lon0, radius, elongation, bearing", WINDOWS)
def test_outline_matches_the_membership_rule_over_the_lower_48(lat0, lon0, radius, elongation, bearing):
    window = {
        "centre_lat": lat0,
        "centre_lon": lon0,
        "radius_km": radius,
        "elongation": elongation,
        "bearing_deg": bearing,
    }
    outline = window_geometry(window)
    assert outline.is_valid
    rng = np.random.default_rng(0)
    lat, lon = rng.uniform(25, 49, 2000), rng.uniform(-124, -67, 2000)
    inside = rule_inside(lat0, lon0, radius, elongation, bearing, lat, lon)
    drawn = np.array([outline.contains(Point(x, y)) for x, y in zip(lon, lat)])
    assert (inside != drawn).mean() <= 0.005  # only where the 180-point outline cuts the true boundary


@pytest.mark.parametrize("lat0, lon0, radius, elongation, bearing", WINDOWS[1:])
def test_large_windows_are_drawn_clipped_to_land_without_error(lat0, lon0, radius, elongation, bearing):
    window = {"id": "window-1", "centre_lat": lat0, "centre_lon": lon0, "radius_km": radius}
    window |= {"elongation": elongation, "bearing_deg": bearing}
    (shape,) = map_shapes({"windows": [window]}, [{"id": "window-1", "wer": 0.1}], ["window-1"], [])
    assert shape.geometry.area > 0 and shape.role == "bottom"
