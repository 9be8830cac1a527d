"""Distillation: teacher knowledge, samplers, losses, the Distiller, and the methods by name."""

from tfkd.distill import losses, samplers, teacher
from tfkd.distill.base import METHODS, Distiller, Method, get, register
from tfkd.distill import rrd  # registers "rrd"  # noqa: E402
from tfkd.distill.rrd import RRDConfig
