"""The variant factory: builds compressed variants of a zoo's detectors (extra [build]; the daemon never imports it).

Each technique writes a new model file and its manifest entry, with provenance enough to rebuild it, and is held
to an accuracy guard measured on a named eval set.
"""
