"""HTTP over one Predictor (``fundus-edge serve``; the optional ``serve`` extra: FastAPI, uvicorn,
python-multipart). The image reader, the Predictor and the PNG writer are the runtime's: a served mask is
the file ``predict`` writes, byte for byte."""
