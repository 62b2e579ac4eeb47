"""The measuring floor above the runtime: vessel biomarkers (fundus_edge.measure.biomarkers) and their
validation against DRIVE's two human observers (fundus_edge.measure.validate_biomarkers). Plain numpy,
SciPy, scikit-image and skan; it imports fundus_edge.runtime at most, and the runtime never imports it."""
