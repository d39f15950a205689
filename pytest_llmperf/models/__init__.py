"""Which model runs: the packaged default GGUF (``packaged``), model specs per format
(``spec``) and the quantized variants made from a source model (``quantize``)."""
