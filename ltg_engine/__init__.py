"""ltg_engine: fast long-text generation with encoder-decoder models.

The runtime (this package, minus training/ and export/) needs numpy,
onnxruntime and sentencepiece; it never imports torch.

    from ltg_engine import Generator
    gen = Generator.load("MODEL_DIR")
    print(gen.generate("some long context ...", max_new_tokens=64).text)
"""
__version__ = "0.1.0"

from ltg_engine.model_dir import ModelDirError  # noqa: E402


def __getattr__(name):
    # Lazy so `import ltg_engine` stays cheap (no onnxruntime import) for
    # tools that only read a model directory.
    if name in ("Generator", "GenerationResult", "Hypothesis", "GenerationCancelled", "GenerationTimeout"):
        from ltg_engine import generator

        return getattr(generator, name)
    if name == "GenerationOptions":
        from ltg_engine.options import GenerationOptions

        return GenerationOptions
    raise AttributeError(f"module 'ltg_engine' has no attribute {name!r}")


__all__ = ["Generator", "GenerationResult", "Hypothesis", "GenerationOptions", "GenerationCancelled",
           "GenerationTimeout", "ModelDirError", "__version__"]
