"""Signals: detectors over trades and books, their thresholds, and their scores against planted truth.

``config`` (thresholds file, validated), ``reload`` (thresholds that follow their file), ``score``
(the SIMULATOR.md matching rules), ``detect`` (every registered detector over decoded input).
"""
