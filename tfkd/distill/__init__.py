"""Distillation: teacher knowledge, samplers, losses, the Distiller, and the methods by name."""

from tfkd.distill import losses, ranks, samplers, teacher
from tfkd.distill.base import METHODS, Distiller, Method, get, register
from tfkd.distill import dcd, rrd  # register "dcd" and "rrd"  # noqa: E402
from tfkd.distill.dcd import DCDConfig
from tfkd.distill.rrd import RRDConfig
