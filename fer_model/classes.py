"""The seven expression classes, in the one order used everywhere."""

# FER2013 faces are 48x48 gray images; every model takes faces in this format.
FACE_SIZE = 48

CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

# The original fer2013.csv encodes emotions as integers in its own order.
# Map them by name so the canonical order above can never drift from the CSV's.
CSV_CODE_NAMES: dict[int, str] = {
    0: "angry",
    1: "disgust",
    2: "fear",
    3: "happy",
    4: "sad",
    5: "surprise",
    6: "neutral",
}
CSV_CODE_TO_INDEX: dict[int, int] = {code: CLASSES.index(name) for code, name in CSV_CODE_NAMES.items()}
