"""Distillation: teacher knowledge, samplers, losses, the Distiller, and the methods by name."""

from tfkd.distill import losses, ranks, samplers, teacher
from tfkd.distill.base import (METHODS, Distiller, Forward, Method, config_from_flags,
                               define_flags, get, register)
from tfkd.distill import cd, dcd, rd, rrd  # register the methods by name  # noqa: E402
from tfkd.distill.cd import CDConfig
from tfkd.distill.dcd import DCDConfig
from tfkd.distill.rd import RDConfig
from tfkd.distill.rrd import RRDConfig
