"""Speaker embeddings from audio (``fairaudit embed``, SPEC 11): audio files -> the embeddings file
that ``--embeddings`` reads. Needs the optional extra ``fairaudit[embed]`` (resemblyzer)."""
