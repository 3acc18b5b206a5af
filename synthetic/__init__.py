"""The synthetic ISIC 2024 set in the exact Kaggle layout (``isic synth``): the generative story
(``generate``), category levels (``levels``), the Kaggle tables (``kaggle_tables``), the crops
(``render``) and the config (``config``)."""
