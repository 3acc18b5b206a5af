"""isicstack.pipelines."""
