"""Analyses: a static report computed in the request, measured gradients in a job."""
