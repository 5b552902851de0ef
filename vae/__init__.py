"""vaebench's workload: the course VAE on MNIST and its ladder of data pipelines.

Public interface (used by ``bench``'s built-in workload and anyone else):

- ``vae.data.load_mnist(root, *, train, dataset="auto", download=False, limit=None)``
- ``vae.pipelines.PIPELINES``, ``vae.pipelines.LADDER``, ``vae.pipelines.make_pipeline(...)``
- ``vae.model.VAE``, ``vae.model.vae_loss``, ``vae.model.model_loss`` (forward + loss)
- ``vae.train.train_step``, ``train_epoch``, ``evaluate``, ``save_images``

It imports ``plumbing`` (devices, argparse types, atomic files, logging) and never ``bench``.
"""
