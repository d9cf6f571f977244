"""The variant family: manifest, evaluation, profiling, reports. The factory lives in zoo/build (extra [build])."""
