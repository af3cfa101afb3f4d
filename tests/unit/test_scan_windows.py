"""The window rule of fairaudit.geodata.windows against an independent computation (haversine
distance and initial bearing), and the drawn boundary against the rule."""

import numpy as np
import pytest

from fairaudit.geodata.distance import haversine_km, unit_vectors
from fairaudit.geodata.windows import boundary_km, projected_km, squared_window_radius_km2
from fairaudit.render.usmap import destination


def squared_by_bearing(centre_lat, centre_lon, elongation, bearing_deg, lat, lon):
    """(d cos(a - b))^2 / e + (d sin(a - b))^2 x e from the haversine distance d and azimuth a."""
    distance = haversine_km(centre_lat, centre_lon, lat, lon)
    phi1, phi2, dlon = np.radians(centre_lat), np.radians(lat), np.radians(lon - centre_lon)
    azimuth = np.arctan2(
        np.sin(dlon) * np.cos(phi2), np.cos(phi1) * np.sin(phi2) - np.sin(phi1) * np.cos(phi2) * np.cos(dlon)
    )
    turn = azimuth - np.radians(bearing_deg)
    return (distance * np.cos(turn)) ** 2 / elongation + (distance * np.sin(turn)) ** 2 * elongation


@pytest.mark.parametrize("elongation, bearing", [(1.0, 0.0), (3.0, 0.0), (3.0, 45.0), (3.0, 90.0), (2.5, 135.0)])
def test_squared_radius_matches_distance_and_bearing(elongation, bearing):
    rng = np.random.default_rng(0)
    centres = np.array([[33.625, -84.375], [41.875, -87.625], [29.125, -95.375]])
    lat, lon = rng.uniform(25, 49, 500), rng.uniform(-124, -67, 500)
    north, east = projected_km(centres[:, 0], centres[:, 1], unit_vectors(lat, lon))
    squared = squared_window_radius_km2(north, east, elongation, bearing)
    for row, (c_lat, c_lon) in enumerate(centres):
        expected = squared_by_bearing(c_lat, c_lon, elongation, bearing, lat, lon)
        np.testing.assert_allclose(np.sqrt(squared[row]), np.sqrt(expected), rtol=1e-9, atol=1e-6)


def test_an_east_west_ellipse_reaches_three_times_farther_east_than_north():
    lat, lon = np.array([30.0, 36.0, 30.0]), np.array([-84.0, -84.0, -94.5])  # centre; 667 km N; ~1,010 km W
    north, east = projected_km(np.array([30.0]), np.array([-84.0]), unit_vectors(lat, lon))
    squared = squared_window_radius_km2(north, east, 3.0, 90.0)[0]
    radius = 600.0  # semi-axes 1,039 km east-west and 346 km north-south
    assert squared[0] == pytest.approx(0.0, abs=1e-9)
    assert squared[1] > radius**2  # 667 km north: outside
    assert squared[2] <= radius**2  # about 1,010 km west: inside


@pytest.mark.parametrize("elongation, bearing", [(1.0, 0.0), (3.0, 45.0), (3.0, 90.0)])
def test_the_drawn_boundary_lies_on_the_rule(elongation, bearing):
    radius = 400.0
    for azimuth in np.arange(0.0, 360.0, 15.0):
        lat, lon = destination(35.125, -97.375, azimuth, boundary_km(radius, elongation, bearing, azimuth))
        squared = squared_by_bearing(35.125, -97.375, elongation, bearing, np.array([lat]), np.array([lon]))
        assert np.sqrt(squared[0]) == pytest.approx(radius, rel=1e-6)
