"""Analyses of a VideoMamba: cost (FLOPs, parameters), Δ maps, frame shuffles."""
