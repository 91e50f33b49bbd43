"""Static vocabularies and persona parameters of the synthetic population."""

from __future__ import annotations

import numpy as np

CATEGORIES = [
    "electronics",
    "apparel",
    "home",
    "beauty",
    "grocery",
    "sports",
    "toys",
    "books",
]
# Typical unit price per category (lognormal median), in USD.
CATEGORY_PRICE = np.array([180.0, 35.0, 45.0, 22.0, 6.0, 40.0, 25.0, 15.0])
SEARCH_TERMS = [
    ["headphones", "usb c charger", "4k tv", "laptop"],
    ["running jacket", "jeans", "sneakers", "summer dress"],
    ["bed sheets", "coffee maker", "lamp", "storage box"],
    ["moisturizer", "lipstick", "shampoo", "sunscreen"],
    ["coffee beans", "olive oil", "pasta", "snacks"],
    ["yoga mat", "dumbbells", "tennis racket", "bike helmet"],
    ["lego", "puzzle", "board game", "plush toy"],
    ["cookbook", "thriller", "kids books", "notebook"],
]
SKUS_PER_CATEGORY = 250

# name, share, mean purchases/day, gamma shape, store share, mean lines per basket,
# browse sessions/day at the persona's mean rate, max devices, P(CRM record), P(loyalty card),
# P(web account), trend (flat, lapse, start), cash share.
PERSONAS = [
    ("loyal_omnichannel", 0.15, 0.050, 3.0, 0.55, 3.0, 0.030, 3, 0.95, 0.85, 0.80, "flat", 0.15),
    ("bargain_hunter", 0.15, 0.020, 1.5, 0.60, 4.0, 0.025, 2, 0.70, 0.70, 0.50, "flat", 0.35),
    ("online_browser", 0.22, 0.008, 1.0, 0.10, 1.5, 0.045, 3, 0.45, 0.10, 0.70, "flat", 0.20),
    ("lapsed", 0.13, 0.025, 2.0, 0.50, 2.5, 0.020, 2, 0.75, 0.50, 0.50, "lapse", 0.25),
    ("new_explorer", 0.15, 0.025, 1.5, 0.35, 2.0, 0.030, 2, 0.50, 0.30, 0.60, "start", 0.20),
    ("store_only", 0.20, 0.012, 1.2, 1.00, 2.5, 0.000, 0, 0.50, 0.60, 0.00, "flat", 0.45),
]
PERSONA_NAMES = [p[0] for p in PERSONAS]
PERSONA_CATEGORY_WEIGHTS = np.array(
    [
        [0.20, 0.20, 0.15, 0.10, 0.15, 0.10, 0.05, 0.05],
        [0.10, 0.20, 0.15, 0.10, 0.30, 0.05, 0.05, 0.05],
        [0.30, 0.20, 0.10, 0.10, 0.02, 0.10, 0.08, 0.10],
        [0.10, 0.25, 0.20, 0.15, 0.10, 0.10, 0.05, 0.05],
        [0.15, 0.20, 0.15, 0.15, 0.05, 0.10, 0.10, 0.10],
        [0.05, 0.15, 0.20, 0.10, 0.35, 0.05, 0.05, 0.05],
    ]
)
# Device mix per persona: mobile, desktop, tablet, app.
DEVICE_TYPES = ["mobile", "desktop", "tablet", "app"]
PERSONA_DEVICE_WEIGHTS = np.array(
    [
        [0.35, 0.30, 0.10, 0.25],
        [0.50, 0.30, 0.10, 0.10],
        [0.40, 0.35, 0.10, 0.15],
        [0.40, 0.40, 0.15, 0.05],
        [0.55, 0.25, 0.10, 0.10],
        [0.40, 0.40, 0.10, 0.10],
    ]
)

# city, state/region, country, postcode prefix, postcode range, area codes, weight, stores
METROS = [
    ("New York", "NY", "US", 10001, 40, [212, 646, 718, 917], 0.26, 4),
    ("Los Angeles", "CA", "US", 90001, 68, [213, 310, 323, 424], 0.20, 3),
    ("Chicago", "IL", "US", 60601, 60, [312, 773, 872], 0.16, 3),
    ("Houston", "TX", "US", 77001, 98, [713, 832, 281], 0.14, 2),
    ("Seattle", "WA", "US", 98101, 98, [206, 425], 0.11, 2),
    ("Miami", "FL", "US", 33101, 98, [305, 786], 0.11, 2),
    ("London", "England", "GB", 0, 0, [20], 0.02, 1),
]
UK_POSTCODES = ["SW1A 1AA", "EC1A 1BB", "W1A 0AX", "N1 9GU", "E14 5AB", "SE1 7PB", "NW1 6XE"]

# Geo-demographics of the postcodes (enrichment/), per metro in METROS order: the share of its
# postcodes, counted from the central one (the lowest ZIP; London's list is all central), that
# is urban, the share up to which the rest is suburban (beyond: rural), and the metro's scale of
# income (in its own currency: GBP for London) and of population density.
METRO_GEO = [
    (0.50, 0.85, 1.15, 2.5),  # New York
    (0.35, 0.80, 1.05, 1.0),  # Los Angeles
    (0.35, 0.80, 1.00, 1.0),  # Chicago
    (0.20, 0.70, 0.95, 0.6),  # Houston
    (0.25, 0.75, 1.20, 0.8),  # Seattle
    (0.20, 0.70, 0.90, 0.9),  # Miami
    (1.00, 1.00, 0.62, 1.3),  # London
]
URBANICITY = ["urban", "suburban", "rural"]
# Per urbanicity: median household income (USD before the metro's scale) and persons per km²
# (before the metro's scale); densities are kept within their urbanicity's band [low, high).
URBANICITY_INCOME = np.array([72_000.0, 88_000.0, 54_000.0])
URBANICITY_DENSITY = np.array([9_000.0, 1_400.0, 60.0])
URBANICITY_DENSITY_BAND = np.array([[2_500.0, 60_000.0], [400.0, 2_500.0], [5.0, 400.0]])
ENRICHMENT_PROVIDER = "synthetic_geodemographics"

# One common short form per given name, used by secondary CRM records (names and their weights
# are in synthetic/_names.py). Names without an entry are never shortened.
NICKNAMES = {
    "Elizabeth": "Liz",
    "Katherine": "Kate",
    "Jennifer": "Jen",
    "Margaret": "Peggy",
    "Patricia": "Pat",
    "Susan": "Sue",
    "Jessica": "Jess",
    "Samantha": "Sam",
    "Victoria": "Vicky",
    "Deborah": "Debbie",
    "Rebecca": "Becky",
    "Catherine": "Cathy",
    "Kathleen": "Kathy",
    "Christine": "Chris",
    "Pamela": "Pam",
    "Barbara": "Barb",
    "Kimberly": "Kim",
    "Robert": "Bob",
    "William": "Bill",
    "Michael": "Mike",
    "James": "Jim",
    "Richard": "Rick",
    "Thomas": "Tom",
    "Christopher": "Chris",
    "Joseph": "Joe",
    "Daniel": "Dan",
    "Anthony": "Tony",
    "Alexander": "Alex",
    "Nicholas": "Nick",
    "Matthew": "Matt",
    "Andrew": "Andy",
    "Steven": "Steve",
    "Stephen": "Steve",
    "David": "Dave",
    "Jonathan": "Jon",
    "Joshua": "Josh",
    "Timothy": "Tim",
    "Kenneth": "Ken",
    "Gregory": "Greg",
    "Edward": "Ed",
    "Charles": "Charlie",
    "Ronald": "Ron",
    "Donald": "Don",
    "Benjamin": "Ben",
    "Jacob": "Jake",
    "Zachary": "Zach",
    "Samuel": "Sam",
    "Jeffrey": "Jeff",
}
STREETS = [
    "Main",
    "Oak",
    "Maple",
    "Cedar",
    "Pine",
    "Elm",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "Sunset",
    "Broadway",
    "Madison",
    "Lincoln",
    "Church",
    "River",
    "Highland",
    "Spring",
]
STREET_SUFFIX = ["St", "Ave", "Rd", "Blvd", "Ln", "Dr"]
EMAIL_DOMAINS = [
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "icloud.com",
    "hotmail.com",
    "aol.com",
    "proton.me",
]
OCCUPATIONS = [
    "engineer",
    "teacher",
    "nurse",
    "sales",
    "student",
    "retired",
    "manager",
    "designer",
    "driver",
    "accountant",
    "chef",
    "self-employed",
]
GENDER_SPELLINGS = {  # index 0 female, 1 male, 2 other
    0: ["F", "female", "Female", "f"],
    1: ["M", "male", "Male", "m"],
    2: ["X", "non-binary", "other"],
}
UTM = [  # source, medium, campaign (None: direct traffic)
    (None, None, None),
    ("google", "cpc", "brand_search"),
    ("google", "organic", None),
    ("facebook", "paid_social", "summer_sale_2026"),
    ("instagram", "paid_social", "new_arrivals"),
    ("newsletter", "email", "weekly_digest"),
    ("meta", "paid_social", "retarget_rfm_champions"),
]
UTM_WEIGHTS = np.array([0.35, 0.18, 0.15, 0.10, 0.07, 0.10, 0.05])
EMAIL_UTM = 5
