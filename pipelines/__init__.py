"""isicstack.pipelines: the ``isic`` command line, the chain of ``make all`` and tuning."""
