"""Instructions written for moalign's bundled task: everyday explanations, advice, writing and comparisons.

Templates are combined with topics that suit them, giving a few hundred distinct instructions of the
kind where answers can be detailed or brief, warm or neutral, plain or technical.
"""

from __future__ import annotations

import random

_EXPLAIN = [
    "photosynthesis", "how vaccines work", "compound interest", "why the sky is blue", "how a bicycle stays upright",
    "what a black hole is", "how rainbows form", "inflation", "how the internet sends data", "what DNA does",
    "how a refrigerator keeps food cold", "why we have seasons", "how bees make honey", "what a budget is",
    "how earthquakes happen", "what a credit score is", "how plants drink water", "why leaves change colour",
    "how a vaccine is tested", "what an API is", "how tides work", "why bread rises", "how memory works in the brain",
    "what a recession is", "how solar panels make electricity", "why cats purr", "how a password is kept safe",
    "what a volcano is", "how clouds form", "what recycling does", "how the heart pumps blood", "what an election is",
]
_EXPLAIN_TEMPLATES = [
    "Explain {} to a ten-year-old.",
    "What is the simplest way to understand {}?",
    "Can you describe {} in a few sentences?",
    "Give me a clear explanation of {}.",
]
_ADVICE = [
    "sleeping better", "learning a new language", "saving money each month", "staying focused while studying",
    "starting to run", "cooking healthy meals on a budget", "making friends in a new city", "keeping houseplants alive",
    "preparing for a job interview", "writing a good email", "reducing stress at work", "reading more books",
    "organising a small kitchen", "giving a short speech", "learning to play the guitar", "keeping a journal",
    "drinking more water", "planning a weekend trip", "teaching a child to ride a bike", "getting up earlier",
    "taking better photos with a phone", "cutting down on screen time", "helping a friend who feels sad",
    "asking for a raise", "learning to code", "keeping a tidy desk", "training a puppy", "eating more vegetables",
]
_ADVICE_TEMPLATES = [
    "Give me some tips for {}.",
    "How can I get better at {}?",
    "What should a beginner know about {}?",
    "I am struggling with {}. What would you suggest?",
]
_WRITING = [
    "a thank-you note to a colleague who helped me", "a short birthday message for my sister",
    "an apology to a friend for missing their party", "a welcome message for a new team member",
    "a note asking my neighbour to keep the noise down", "a reminder to my team about Friday's deadline",
    "a message congratulating a friend on a new job", "a short review of a cafe I liked",
    "a polite request to return a borrowed book", "an invitation to a small dinner at my home",
    "a farewell message for a retiring teacher", "a get-well-soon card for my uncle",
    "a short description of my hometown", "a message declining a meeting invitation",
    "an encouraging note to a student before an exam", "a short post announcing a garage sale",
]
_WRITING_TEMPLATES = ["Write {}.", "Please draft {}.", "Help me write {}."]
_COMPARE = [
    ("cats", "dogs as pets"), ("tea", "coffee"), ("renting", "buying a home"), ("trains", "planes for travel"),
    ("paper books", "e-books"), ("running", "swimming for fitness"), ("city life", "country life"),
    ("saving", "investing"), ("working from home", "working in an office"), ("public schools", "home schooling"),
    ("summer", "winter holidays"), ("learning alone", "learning in a class"), ("cooking at home", "eating out"),
    ("electric cars", "petrol cars"), ("a laptop", "a desktop computer"), ("morning", "evening workouts"),
]
_COMPARE_TEMPLATES = [
    "What are the pros and cons of {} versus {}?",
    "Compare {} and {}.",
    "Should I choose {} or {}? Help me decide.",
]


def bundled_prompts(n: int | None = None, seed: int = 0) -> list[str]:
    """All bundled instructions in a seeded random order, or the first ``n`` of that order."""
    prompts = [t.format(topic) for topic in _EXPLAIN for t in _EXPLAIN_TEMPLATES]
    prompts += [t.format(topic) for topic in _ADVICE for t in _ADVICE_TEMPLATES]
    prompts += [t.format(task) for task in _WRITING for t in _WRITING_TEMPLATES]
    prompts += [t.format(a, b) for a, b in _COMPARE for t in _COMPARE_TEMPLATES]
    random.Random(seed).shuffle(prompts)
    if n is not None:
        if not 0 < n <= len(prompts):
            raise ValueError(f"n must be between 1 and {len(prompts)}, got {n}")
        prompts = prompts[:n]
    return prompts
