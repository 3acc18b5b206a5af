"""Category levels and their weights for the synthetic generator, from real-data ranges.

Kept apart from ``generate.py`` so the generative story there reads without ~60 lines of
tables: anatomical locations (with body-coordinate means/sds), hospitals (licence, tile
lighting), and the diagnosis strings of the ``iddx_*`` columns.
"""

from __future__ import annotations

from isicstack.data.schema import LEVELS

# location: (weight, x mean, x sd, y mean, y sd, z mean, z sd), from real-data ranges
LOCATIONS: dict[str, tuple[float, ...]] = {
    "Torso Back Top Third": (71, -5, 100, 1354, 160, 131, 60),
    "Torso Front Top Half": (63, -3, 110, 1307, 155, -28, 68),
    "Torso Back Middle Third": (46, -2, 103, 1129, 96, 132, 57),
    "Left Leg - Lower": (27, -200, 85, 292, 118, 77, 40),
    "Right Leg - Lower": (25, 200, 85, 291, 120, 80, 43),
    "Torso Front Bottom Half": (24, -15, 123, 1018, 178, -50, 68),
    "Left Leg - Upper": (24, -150, 88, 631, 87, 24, 58),
    "Right Leg - Upper": (23, 150, 90, 634, 94, 29, 59),
    "Right Arm - Upper": (23, 280, 150, 1323, 119, 70, 59),
    "Left Arm - Upper": (23, -284, 126, 1321, 169, 71, 54),
    "Head & Neck": (12, 4, 55, 1576, 112, -36, 79),
    "Right Arm - Lower": (8.3, 367, 200, 1110, 136, 17, 83),
    "Left Arm - Lower": (8.0, -332, 200, 1046, 108, -4, 77),
    "Torso Back Bottom Third": (6.0, 0, 104, 905, 60, 157, 41),
    "Left Leg": (1.1, -190, 90, 460, 180, 50, 60),
    "Right Leg": (0.9, 190, 90, 460, 180, 50, 60),
    "Left Arm": (0.8, -300, 150, 1200, 150, 40, 60),
    "Right Arm": (0.75, 300, 150, 1200, 150, 40, 60),
    "Torso Front": (0.25, 0, 110, 1150, 200, -40, 70),
    "Torso Back": (0.2, 0, 105, 1150, 200, 135, 60),
}
LOC_NAMES = tuple(LOCATIONS)
_SITE = {"Torso Back": "posterior torso", "Torso Front": "anterior torso", "Leg": "lower extremity",
         "Arm": "upper extremity", "Head": "head/neck"}
SIMPLE = tuple(n.split(" - ")[0].replace(" Top Third", "").replace(" Middle Third", "")
               .replace(" Bottom Third", "").replace(" Top Half", "").replace(" Bottom Half", "")
               for n in LOC_NAMES)
SITE = tuple(next(v for k, v in _SITE.items() if k in s) for s in SIMPLE)
# hospital: (patient weight, licence, P(tile = "3D: white"))
HOSPITALS = dict(zip(LEVELS["attribution"], [(32, "CC-BY", 0.92), (26, "CC-BY-NC", 0.01),
                 (16, "CC-BY-NC", 0.0), (13, "CC-BY", 0.06), (7, "CC-0", 0.0),
                 (3, "CC-BY-NC", 0.0), (2.3, "CC-BY", 0.0)], strict=True))
# (iddx_full, family, weight within family)
MALIGNANT = [
    ("Basal cell carcinoma::Basal cell carcinoma, Nodular", "bcc", 70),
    ("Basal cell carcinoma::Basal cell carcinoma, Superficial", "bcc", 36),
    ("Basal cell carcinoma", "bcc", 8), ("Basal cell carcinoma::Basal cell carcinoma, Infiltrating",
                                         "bcc", 2),
    ("Squamous cell carcinoma in situ", "scc", 34),
    ("Squamous cell carcinoma, Invasive", "scc", 12),
    ("Squamous cell carcinoma, Invasive::Squamous cell carcinoma, Invasive, Keratoacanthoma-type",
     "scc", 4), ("Squamous cell carcinoma, NOS", "scc", 1),
    ("Melanoma in situ", "mel", 30), ("Melanoma in situ::Melanoma in situ, Lentigo maligna type",
                                      "mel", 9),
    ("Melanoma in situ::Melanoma in situ, associated with a nevus", "mel", 9),
    ("Melanoma Invasive::Melanoma Invasive, Superficial spreading", "mel", 27),
    ("Melanoma Invasive", "mel", 8), ("Melanoma, NOS", "mel", 7),
    ("Melanoma Invasive::Melanoma Invasive, Associated with a nevus", "mel", 7),
]
FAMILY = {"bcc": "Malignant adnexal epithelial proliferations - Follicular",
          "scc": "Malignant epidermal proliferations",
          "mel": "Malignant melanocytic proliferations (Melanoma)"}
BENIGN_DETAIL = ["Benign::Benign melanocytic proliferations::Nevus",
                 "Benign::Benign melanocytic proliferations::Nevus::Nevus, NOS, Junctional",
                 "Benign::Benign epidermal proliferations::Seborrheic keratosis",
                 "Indeterminate::Indeterminate epidermal proliferations::"
                 "Solar or actinic keratosis"]
MITOTIC = ["0/mm^2", "<1/mm^2", "1/mm^2", "2/mm^2", "3/mm^2", "4/mm^2", ">4/mm^2"]
