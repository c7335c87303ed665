"""Seeing what a video model learned: activation maximisation over space and time (Deep Insights),
Grad-CAM over time, optical-flow colouring and arrows, animations and contact sheets, plus the
training curves and evaluation reports of a run (`plots`, `report`)."""

from vidrec.visualize.flowviz import draw_arrows, flow_to_colour, wheel_legend
from vidrec.visualize.gradcam import CamResult, default_layers, grad_cam
from vidrec.visualize.hooks import capture
from vidrec.visualize.maximize import MaximizeConfig, MaxResult, Regularizer, input_gradients, maximize
from vidrec.visualize.units import Unit

__all__ = [
    "CamResult", "MaxResult", "MaximizeConfig", "Regularizer", "Unit", "capture", "default_layers",
    "draw_arrows", "flow_to_colour", "grad_cam", "input_gradients", "maximize", "wheel_legend",
]  # fmt: skip
