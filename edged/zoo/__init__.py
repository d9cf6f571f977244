"""The variant family: manifest, evaluation, profiling, reports. edged/factory ([build]) builds it."""
