"""The deployable model: the versioned bundle and its reference statistics, the MLflow Model
Registry, the scorer the API and the web page call, and the prediction log."""
