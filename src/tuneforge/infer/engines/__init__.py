"""Engine backends, one module each, named as `serve.backend` names them (see tuneforge.infer.engine)."""
