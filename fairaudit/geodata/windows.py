"""Scan windows on the sphere: circles and ellipses around a centre (geo-scan's membership rule).

A window is a centre, a radius r, an elongation e >= 1 and the compass bearing theta of its long
axis. Around its centre, places are laid out in the azimuthal equidistant projection: a place at
great-circle distance d and compass bearing beta has the coordinates along = d cos(beta - theta)
and across = d sin(beta - theta). It is inside when along^2 / e + across^2 x e <= r^2: an ellipse
with semi-axes r sqrt(e) along the axis and r / sqrt(e) across it, of the same area as the circle
of radius r. With e = 1 it is that circle (every bearing alike).

Scans compute the rule for many centres and places at once from unit vectors (no trigonometry
per pair but one arccos); the report's map draws the same boundary from ``boundary_km``.
"""

from __future__ import annotations

import math

import numpy as np

from fairaudit.geodata.distance import EARTH_RADIUS_KM, unit_vectors

#: Names of the long axis's direction, by bearing (degrees clockwise from north, in [0, 180)).
AXIS_NAMES = {0.0: "north-south", 45.0: "northeast-southwest", 90.0: "east-west", 135.0: "northwest-southeast"}


def semi_axes_km(radius_km: float, elongation: float) -> tuple[float, float]:
    """Semi-axes (along, across) of the window of ``radius_km`` and ``elongation``."""
    root = math.sqrt(elongation)
    return radius_km * root, radius_km / root


def boundary_km(radius_km: float, elongation: float, bearing_deg: float, azimuth_deg: float) -> float:
    """Distance from the centre to the window's boundary in the direction ``azimuth_deg``."""
    angle = math.radians(azimuth_deg - bearing_deg)
    return radius_km / math.sqrt(math.cos(angle) ** 2 / elongation + math.sin(angle) ** 2 * elongation)


def projected_km(lat: np.ndarray, lon: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C, L) north and east coordinates (km) of the places (3, L) in the azimuthal equidistant
    projection around each centre (C,): distance d and bearing beta become (d cos beta, d sin beta).

    Computed element by element (no BLAS), so a pair gets the same value however many centres and
    places are processed together.
    """
    phi, lam = np.radians(lat), np.radians(lon)
    east = np.stack([-np.sin(lam), np.cos(lam), np.zeros_like(lam)])
    north = np.stack([-np.sin(phi) * np.cos(lam), -np.sin(phi) * np.sin(lam), np.cos(phi)])
    angle = np.arccos(np.clip(pairwise_dot(unit_vectors(lat, lon), points), -1.0, 1.0))
    sine = np.sin(angle)
    scale = EARTH_RADIUS_KM * np.divide(angle, sine, out=np.ones_like(angle), where=sine > 0)
    return pairwise_dot(north, points) * scale, pairwise_dot(east, points) * scale


def squared_window_radius_km2(
    north_km: np.ndarray, east_km: np.ndarray, elongation: float, bearing_deg: float
) -> np.ndarray:
    """along^2 / e + across^2 x e (km^2) of projected places: a place is inside the window of
    radius r, elongation e and long-axis bearing ``bearing_deg`` when this is at most r^2."""
    theta = math.radians(bearing_deg)
    along = north_km * math.cos(theta) + east_km * math.sin(theta)
    across = east_km * math.cos(theta) - north_km * math.sin(theta)
    return along * along / elongation + across * across * elongation


def pairwise_dot(rows: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(C, L) dot products of vectors (3, C) and (3, L), element by element."""
    total = rows[0][:, None] * points[0][None, :]
    total += rows[1][:, None] * points[1][None, :]
    total += rows[2][:, None] * points[2][None, :]
    return total
