"""Frames -> detections: engines, pre-processing, decoders, NMS."""
