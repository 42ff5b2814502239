"""The scoring / embedding flow, one stage a module: inputs (``sources``) -> pixels (``decode``) ->
faces (``detect``) -> crops (``align``), one image at a time (``faces``); chunks of images through
the model in workers (``run``, on an ``executors`` back end); part files, resume and the final
output (``store``).

Nothing is imported here: ``import facequal.pipeline`` stays light, and each stage is imported
where it is used.
"""
