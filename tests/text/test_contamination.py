"""The benchmark matcher (refed_dspy.text.contamination): exact after normalization as a reader sees the texts, word n-gram
overlap of the shorter text, the shorter text's words in order or in pairs of words in any order, against brute force
on random text; variants of real benchmark prompts (markup, joined words, leetspeak, order, fillers, synonyms) against
unrelated instructions in the same register."""

import random
import re

import pytest

from refed_dspy.text.contamination import (
    LONGER,
    ORDER_WORDS,
    BenchmarkIndex,
    exact_key,
    in_order,
    in_pairs,
    ngram_hashes,
    render,
    words,
)

PROMPT = "What are the names of some famous actors that started their careers on Broadway?"  # 14 words, 7 8-grams


def test_normalization_ignores_case_whitespace_and_punctuation():
    assert exact_key("  What ARE the names...\n of SOME famous actors?! ") == exact_key(
        "what are the names of some famous actors"
    )
    assert words("Café, naïve; snake_case 42") == words("cafe naive snake case 42")  # any script, digits
    assert len(words("Café, naïve; snake_case 42")) == 5  # an underscore joins words, it is none
    # Unicode reads Cyrillic "І" as "l": it matches the "I" it imitates, and "l", "1", "o" and "0" as their look-alikes
    assert exact_key("\u0406s it 10 or lO?") == exact_key("Is it lo or 10?")
    assert exact_key("?!...") == ""
    assert ngram_hashes(["one", "two", "three"], 2) == {hash(("one", "two")), hash(("two", "three"))}
    assert ngram_hashes(words("one two"), 3) == set()


def test_exact_match_after_normalization():
    index = BenchmarkIndex({"bench": [PROMPT, "Write a haiku."]})
    found = index.match("what are the names of some famous ACTORS that started their careers on broadway")
    assert (found.benchmark, found.prompt, found.how, found.overlap) == ("bench", PROMPT, "exact", 1.0)
    assert index.match("Write a  HAIKU").how == "exact"  # shorter than an n-gram: exact only
    assert index.match("Write two haiku.") is None
    assert index.match("") is None and index.match("...") is None


def test_two_words_changed_at_the_ends_shares_five_of_seven_8grams():
    index = BenchmarkIndex({"bench": [PROMPT]})
    found = index.match("Which are the names of some famous actors that started their careers on stage?")
    assert found.how == "ngram" and found.overlap == round(5 / 7, 4)


def test_a_change_in_the_middle_of_a_short_prompt_breaks_its_8grams_but_not_its_words_in_order():
    """Issue 52: one word changed in the middle of a 14-word prompt shares none of its 8-grams, so the overlap rule
    let it through; 13 of its 14 words in order are a copy. `ngram = 4` still finds it by overlap."""
    edited = "What are the names of some well known actors that started their careers on Broadway?"
    found = BenchmarkIndex({"b": [PROMPT]}).match(edited)
    assert (found.how, found.overlap) == ("order", round(13 / 14, 4))
    assert BenchmarkIndex({"b": [PROMPT]}, ngram=4).match(edited).how == "ngram"


def test_the_share_is_of_the_shorter_text_so_a_prompt_inside_a_longer_sample_matches():
    index = BenchmarkIndex({"bench": [PROMPT]})
    longer = f"Please answer this carefully. {PROMPT} Also list one play each of them was in, and the year it opened."
    assert index.match(longer).overlap == 1.0
    assert index.match(longer).how == "ngram"


@pytest.mark.parametrize("share, matches", [(0.71, True), (5 / 7, True), (0.72, False)])
def test_the_share_is_a_threshold_reached_at_equality(share, matches):
    index = BenchmarkIndex({"bench": [PROMPT]}, share=share)
    text = "Which are the names of some famous actors that started their careers on stage?"  # 5 of 7
    assert (index.match(text) is not None) is matches


def test_the_best_prompt_wins_and_a_tie_goes_to_the_first_given():
    a = "Explain how the tides of the ocean are caused by the moon and the sun in simple terms for a child."
    b = "Explain how the tides of the ocean are caused by the moon and the sun in great detail."
    index = BenchmarkIndex({"first": [b], "second": [a]})
    assert index.match(a).benchmark == "second" and index.match(a).how == "exact"
    shared = "Explain how the tides of the ocean are caused by the moon and the sun"  # inside both
    assert index.match(shared).benchmark == "first"  # both 100%: the first given


def test_prompts_are_counted_once_per_benchmark_and_bad_settings_refused():
    index = BenchmarkIndex({"a": [PROMPT, PROMPT.upper(), "", "x"], "b": [PROMPT]})
    assert index.counts == {"a": 2, "b": 1} and len(index) == 3
    assert index.match(PROMPT).benchmark == "a"
    with pytest.raises(ValueError, match="ngram"):
        BenchmarkIndex({}, ngram=0)
    with pytest.raises(ValueError, match="share"):
        BenchmarkIndex({}, share=0)


def test_the_index_gives_what_comparing_with_every_prompt_gives():
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(60)]
    prompts = [" ".join(rng.choices(vocab, k=rng.randint(6, 30))) for _ in range(150)]
    texts = []
    for _ in range(300):
        base = rng.choice(prompts).split()
        for _ in range(rng.randint(0, 4)):
            base[rng.randrange(len(base))] = rng.choice(vocab)
        texts.append(" ".join(base) if rng.random() < 0.7 else " ".join(rng.choices(vocab, k=20)))
    index = BenchmarkIndex({"b": prompts}, ngram=3, share=0.5)

    def brute(text):
        key = exact_key(text)
        if key in {exact_key(p) for p in prompts}:
            return 1.0
        mine = ngram_hashes(words(text), 3)
        best = 0.0
        for p in prompts:
            theirs = ngram_hashes(words(p), 3)
            if mine and theirs:
                best = max(best, len(mine & theirs) / min(len(mine), len(theirs)))
        return best if best >= 0.5 else None

    agreed = 0
    for text in texts:
        found, expected = index.match(text), brute(text)
        assert (found.overlap if found else None) == (round(expected, 4) if expected is not None else None), text
        agreed += found is not None
    assert 50 < agreed < 300  # both kinds occur


def test_the_order_check_finds_what_checking_every_prompt_finds():
    """The order check looks word by word only at prompts sharing enough trigrams with the text: on texts made of
    prompts with words inserted, dropped and changed, it finds the same prompt as checking each one in turn."""
    rng = random.Random(11)
    vocab = [f"w{i}" for i in range(400)]
    prompts = [" ".join(rng.choices(vocab, k=rng.randint(8, 40))) for _ in range(200)]
    index = BenchmarkIndex({"b": prompts})  # ngram 8: the overlap rule seldom fires on these edits
    found_in_order = 0
    for _ in range(600):
        ws = rng.choice(prompts).split()
        for _ in range(rng.randint(0, 6)):
            kind, at = rng.random(), rng.randrange(len(ws))
            if kind < 0.5:
                ws.insert(at, rng.choice(vocab))
            elif kind < 0.75 and len(ws) > ORDER_WORDS:
                del ws[at]
            else:
                ws[at] = rng.choice(vocab)
        text = " ".join(ws)
        found = index.match(text)
        if found is not None and found.how != "order":
            continue
        expected = None
        for p in prompts:
            mine, theirs = words(text), words(p)
            if len(mine) >= ORDER_WORDS and len(theirs) >= ORDER_WORDS:
                short, long = (theirs, mine) if len(theirs) <= len(mine) else (mine, theirs)
                if in_order(short, long) is not None:
                    expected = p
                    break
        assert (found.prompt if found else None) == expected, text
        found_in_order += found is not None
    assert found_in_order > 50


P = "Explain how the immune system responds when a new virus enters the human body for the first time."
FULL_WIDTH = {c: chr(ord(c) + 0xFEE0) for c in "abcdefghijklmnopqrstuvwxyz"}
RENDERED_THE_SAME = {  # each shows as the prompt does
    "zero-width spaces inside words": P.replace("immune", "imm\u200bune").replace("virus", "vi\u200brus"),
    "a soft hyphen": P.replace("system", "sys\u00adtem"),
    "a zero-width joiner": P.replace("body", "bo\u200ddy"),
    "tag characters": P.replace("enters", "ent\U000e0041\U000e0042ers"),
    "a combining accent": P.replace("new", "ne\u0301w"),
    "a word joiner and a BOM": P.replace("human", "hu\u2060man\ufeff"),
    "Cyrillic look-alike letters": P.replace("a", "\u0430").replace("e", "\u0435").replace("o", "\u043e"),
    "Cyrillic i's": P.replace("i", "\u0456"),
    "full-width letters": "".join(FULL_WIDTH.get(c, c) for c in P),
    "words in span tags": " ".join(f"<span class='w'>{w}</span>" for w in P.split()),
    "a tag inside a word": P.replace("immune", "imm<b>une</b>"),
    "a line break and a paragraph": P.replace("system ", "system<br/>").replace(" the first", "</p><p>the first"),
    "character references": P.replace("e", "&#101;").replace("a", "&#x61;").replace("body", "b&oacute;dy"),
    "non-breaking spaces": P.replace(" ", "&nbsp;", 5).replace(" ", "\u00a0", 3).replace(" ", "&#160;", 2),
    "other space separators": P.replace(" ", "\u2009", 4).replace(" ", "\u3000", 2).replace(" ", "\u202f"),
    "comments inside words": P.replace("Explain", "Expl<!-- x -->ain").replace("virus", "vi<!---->rus"),
    "a doctype and a closing comment": "<!DOCTYPE html>" + P + "<!-- unclosed: the rest is hidden",
}


@pytest.mark.parametrize("kind", list(RENDERED_THE_SAME))
def test_a_prompt_that_renders_the_same_is_the_same(kind):
    text = RENDERED_THE_SAME[kind]
    assert text != P and words(text) == words(P)
    found = BenchmarkIndex({"b": [P]}).match(text)
    assert (found.how, found.prompt) == ("exact", P)


def test_a_filler_word_every_seven_words_breaks_every_8gram_but_not_the_order():
    ws = P.split()
    padded = " ".join(w + (" basically" if i % 7 == 6 else "") for i, w in enumerate(ws))
    assert BenchmarkIndex({"b": [P]}, share=0.01)._overlap(words(padded)) is None  # not one 8-gram left
    found = BenchmarkIndex({"b": [P]}).match(padded)
    assert (found.how, found.overlap) == ("order", 1.0)


@pytest.mark.parametrize(
    "text",
    [
        "Explain how the digestive system responds when a large meal enters the human body after a fast.",
        "Explain how the immune system works.",  # the prompt's start, short: a common phrase, not a copy
        "Write a short story about a virus that enters the human body for the first time.",
        "Describe how a new law enters into force when the human rights council votes for the first time.",
    ],
)
def test_related_text_in_the_same_register_is_not_a_match(text):
    assert BenchmarkIndex({"b": [P]}).match(text) is None


def test_a_text_of_fewer_than_eight_words_matches_only_exactly():
    short = "Write a haiku about autumn leaves."
    index = BenchmarkIndex({"b": [short]})
    assert index.match("Write a haiku about autumn leaves") is not None
    assert index.match("Write a lovely haiku about autumn leaves.") is None


# ---- render-proof (issue 66, item 4): variants of benchmark prompts made with markup, joined words, leetspeak, word
# order, fillers and synonyms, against 200 unrelated instructions in the same register ------------------------------
BENCHMARK = [  # prompts as AlpacaEval 2.0, MT-Bench and IFEval publish them: short and long, questions and tasks
    "What are the names of some famous actors that started their careers on Broadway?",
    "Hi, my sister and her girlfriends want me to play kickball with them. Can you explain how the game is played, so "
    "they don't take advantage of me?",
    "I'm trying to teach myself to have nicer handwriting. Can you help?",
    "Hi, I'm trying to solve a crossword puzzle, but I've never done one of these before. Can you help me out?",
    "I need to get my nephew a birthday gift. I'm thinking of giving him a game for his Nintendo Switch. Can you give "
    "me a few options that came out recently?",
    "Please give me a list of planets in our solar system. I am going to choose which one I want to know more.",
    "How did US states get their names?",
    "What are some good books to buy for a sci fi fan?",
    "Why can I see the moon during the day?",
    "How do I take care of a wooden table?",
    "Compose an engaging travel blog post about a recent trip to Hawaii, highlighting cultural experiences and "
    "must-see attractions.",
    "Draft a professional email seeking your supervisor's feedback on the 'Quarterly Financial Report' you prepared. "
    "Ask specifically about the data analysis, presentation style, and the clarity of conclusions drawn. Keep the "
    "email short and to the point.",
    "Write a persuasive email to convince your introverted friend, who dislikes public speaking, to volunteer as a "
    "guest speaker at a local event. Use compelling arguments and address potential objections. Please be concise.",
    "Describe a vivid and unique character, using strong imagery and creative language. Please answer in fewer than "
    "two paragraphs.",
    "Write a descriptive paragraph about a bustling marketplace, incorporating sensory details such as smells, "
    "sounds, and visual elements to create an immersive experience for the reader.",
    "Craft an intriguing opening paragraph for a fictional short story. The story should involve a character who "
    "wakes up one morning to find that they can time travel.",
    "Pretend yourself to be Elon Musk in all the following conversations. Speak like Elon Musk as much as possible. "
    "Why do we need to go to Mars?",
    "Help me construct a catchy, yet scientifically accurate, headline for an article on the latest discovery in "
    "renewable bio-energy, while carefully handling the ethical dilemmas surrounding bio-energy sources. Propose 4 "
    "options.",
    "Write a resume for a fresh high school graduate who is seeking their first job. Make sure to include at least 12 "
    "placeholder represented by square brackets, such as [address], [name].",
    "I am planning a trip to Japan, and I would like thee to write an itinerary for my journey in a Shakespearean "
    "style. You are not allowed to use any commas in your response.",
]
UNRELATED = """\
What are the names of some famous painters who began as illustrators for magazines?
Which Broadway musicals were later turned into successful films, and were the films faithful?
Which actors are known for doing their own stunts in action movies?
My brother wants me to join his bowling league. Can you explain the scoring so I don't embarrass myself?
Can you explain the rules of cricket to someone who has only ever watched baseball?
How is ultimate frisbee played, and what do beginners usually get wrong?
I want my handwriting to look more like calligraphy. Which pens should I start with?
Can you help me improve my typing speed? I still look at the keyboard all the time.
What exercises help children learn to hold a pencil properly?
I've never done a sudoku before. Can you walk me through how to start one?
Can you give me some tips for finishing the Sunday crossword faster?
Hi, I'm trying to learn chess openings, but I keep losing in the first ten moves. Where should I begin?
I need a birthday present for my niece who loves drawing. What art supplies would suit a ten-year-old?
Can you suggest a few board games that a family of five can play together on holidays?
My grandfather just got a tablet. Which simple games could he enjoy without getting frustrated?
Please give me a list of the largest moons in our solar system, with one fact about each.
Which planet would be the easiest for humans to live on, and what would we need to bring?
Give me a list of the countries in South America and their capitals, in alphabetical order.
How did the days of the week get their names?
Why are some cities named after saints while others are named after rivers?
What are some good podcasts for someone who likes history?
Can you recommend a few fantasy novels for a reader who loved The Hobbit?
Which science fiction films from the 1980s still hold up today?
Why does the sky turn red at sunset?
Why do we only ever see one side of the moon?
How do I remove water stains from a leather sofa?
What is the best way to clean a cast iron pan without ruining the seasoning?
How often should I oil a butcher block countertop?
Write a short travel guide for a weekend in Lisbon on a tight budget.
Compose a packing list for a two-week hiking trip in the Scottish Highlands in October.
What should a first-time visitor to Iceland know about driving in winter?
Write an email asking your landlord to fix the heating before the cold weather arrives.
Draft a polite message declining a job offer while keeping the door open for the future.
Write a thank-you note to a colleague who covered your shifts while you were ill.
Write a speech for a best man at a wedding who has known the groom since primary school.
Write a letter to your local council asking for a pedestrian crossing near the school.
Describe a rainy afternoon in a small seaside town in three sentences.
Write a poem about the smell of bread in the morning, in the style of a nursery rhyme.
Describe the sounds of a forest at night to someone who has never camped.
Write the first line of a mystery novel that takes place on a night train.
Write a story about a dragon who is afraid of fire, for children aged five to seven.
Write a dialogue between a cat and a dog arguing about who is the better pet.
Imagine you are a medieval knight. Describe your morning routine before a tournament.
Act as a travel agent and suggest three destinations for a honeymoon in December.
Pretend you are a museum guide and introduce the Mona Lisa to a group of teenagers.
Suggest five titles for a podcast episode about urban beekeeping.
Propose three names for a bakery that specializes in gluten-free pastries.
Write a catchy slogan for a bicycle repair shop run by two sisters.
Write a cover letter for a junior graphic designer applying to a small advertising agency.
Create a weekly meal plan for a vegetarian student who cooks on a single hob.
Write a limerick about a penguin who wants to fly, without using the letter z.
Answer in exactly three bullet points: why do leaves change color in autumn?
I am organizing a team retreat in the mountains. Write an agenda for two days with plenty of free time.
Summarize the plot of Romeo and Juliet in the style of a sports commentator.
How do I convert a recipe that serves four into one that serves ten?
What is the difference between baking soda and baking powder?
How long should I rest a steak after cooking it, and why does it matter?
Why does bread go stale faster in the fridge than on the counter?
How do I repot a cactus without getting pricked?
What vegetables can I grow on a small balcony that gets afternoon sun?
How do I get my tomato plants to produce more fruit?
How do I teach my dog to stop pulling on the lead?
Why do cats knead blankets with their paws?
How much exercise does a young border collie need each day?
How can I stop procrastinating when I work from home?
What are some ways to fall asleep faster without medication?
How do I start meditating if I have never tried it before?
What is a good stretching routine for people who sit at a desk all day?
How do I prepare for my first half marathon in twelve weeks?
Is it safe to swim right after eating a large meal?
How do I politely ask a neighbor to turn down their music late at night?
How can I make friends after moving to a new city as an adult?
What should I say when a friend tells me they lost their job?
How do I ask for a raise without sounding demanding?
What questions should I ask at the end of a job interview?
How do I write a resignation letter that stays on good terms with my manager?
What is the difference between a Roth IRA and a traditional IRA?
How do index funds work, and why do people recommend them for beginners?
How do I build an emergency fund when I live paycheck to paycheck?
Explain inflation to a teenager using the price of pizza as an example.
What happens to my credit score if I close an old credit card?
How do solar panels turn sunlight into electricity?
Why do airplanes leave white trails in the sky?
How do noise-cancelling headphones work?
What makes a rainbow appear after the rain?
Why is the ocean salty but rivers are not?
How do bees decide where to build a new hive?
Why do we get goosebumps when we are cold or scared?
How did ancient sailors navigate without a compass?
What caused the fall of the Aztec Empire?
Who built Stonehenge, and how did they move the stones?
Why did the Titanic sink so quickly after hitting the iceberg?
What was daily life like for a child in ancient Rome?
How did the printing press change Europe in the fifteenth century?
Write a Python function that returns the second largest number in a list.
How do I reverse a linked list in Java without using extra memory?
Explain the difference between a process and a thread with a kitchen analogy.
What does the git rebase command do, and when should I avoid it?
Write a SQL query that lists customers who have not placed an order in the last year.
How do I center a div horizontally and vertically with CSS?
Why does my Python script say that a module is not found even though I installed it?
Explain recursion to a beginner with an example that is not the factorial.
What is the difference between HTTP and HTTPS, in simple terms?
How do I set up a virtual environment for a new Python project?
Write a regular expression that matches a valid date in the format YYYY-MM-DD.
Solve for y: 4y - 7 = 2y + 9, and show each step.
If a train leaves at 3 pm and travels 180 miles at 60 miles per hour, when does it arrive?
What is the sum of the interior angles of a hexagon, and how do you work it out?
A recipe needs 3 eggs for 12 cookies. How many eggs do I need for 30 cookies?
Explain what a prime number is and list the primes below fifty.
What are the pros and cons of living in a big city compared with a small town?
Should schools ban phones during lessons? Give arguments for both sides.
Compare trains and planes for a trip from Paris to Berlin in terms of cost, time and comfort.
Is it better to learn the piano or the guitar as a first instrument?
What are the main arguments for and against a four-day working week?
Translate "Where is the nearest train station?" into Spanish, French and German.
What is the difference between "who" and "whom", with two examples?
Rewrite this sentence in the passive voice: The committee approved the new budget on Friday.
Give me ten words that rhyme with light, for a song I am writing.
Correct the grammar in this sentence: Me and him goes to the store every days.
What are some fun things to do in Tokyo on a rainy day?
Plan a three-day itinerary for Rome for a family with two young children.
What should I know before adopting a rescue dog from a shelter?
What is the healthiest way to cook broccoli so it keeps its vitamins?
Why do onions make you cry, and how can I stop it?
How can I tell if an egg is still fresh?
Write a haiku about a lighthouse in a storm.
Write a short story that begins with a knock on the door at midnight.
Write a product description for a handmade ceramic coffee mug.
Write a motivational message for a friend who failed their driving test.
Write a tweet announcing the opening of a new public library in our town.
Describe your ideal weekend in exactly fifty words.
Invent a new holiday and describe how people would celebrate it.
What would happen if the moon suddenly disappeared?
If you could have dinner with any historical figure, who would it be and why?
How do I explain to my parents that I want to change my university major?
My teenager spends all day on video games. How can I set limits without constant fights?
How do I tell my friend that her boyfriend is cheating on her?
What are some good icebreaker questions for a team meeting with new members?
How do I run an effective meeting that ends on time?
Give me a checklist for moving into a new apartment.
How do I unclog a kitchen sink without calling a plumber?
How do I hang a heavy mirror on a plaster wall?
What is the best way to paint a room so the walls have no streaks?
How do I fix a bike chain that keeps slipping?
How do I jump-start a car with a dead battery safely?
What should I check before buying a used car from a private seller?
What are the symptoms of dehydration, and how much water should I drink in hot weather?
How can I tell the difference between a cold and the flu?
What should be in a basic first aid kit for a family?
Explain how vaccines were developed for smallpox in the eighteenth century.
What is the greenhouse effect, and why does it matter for the climate?
How do recycling plants separate plastic from paper and metal?
What can one household do to use less water?
Why are coral reefs important, and what threatens them?
Who was Ada Lovelace and why is she remembered?
What did Marie Curie discover, and how did it change medicine?
Who painted the ceiling of the Sistine Chapel and how long did it take?
What is the plot of the opera Carmen, in a few sentences?
Who were the Beatles and why were they so influential?
Name five jazz albums that every beginner should hear.
What are the basic rules of tennis scoring?
How does the offside rule work in football?
Who has won the most Olympic gold medals, and in which sport?
How do chess players calculate several moves ahead?
What is the difference between a crocodile and an alligator?
Why do some birds migrate while others stay all winter?
How do octopuses change color?
How long do elephants live in the wild?
What are the main differences between Buddhism and Hinduism?
What is stoicism, and how can it help in daily life?
What is the trolley problem, and why do philosophers argue about it?
Write an apology email to a customer whose order arrived two weeks late.
Write a job advertisement for a part-time barista at a busy café.
Draft a short announcement that the office will be closed on Monday for maintenance.
Write a review of an imaginary restaurant that serves only soup.
Write a letter from a lighthouse keeper to his sister on the mainland.
Write a bedtime story about a sleepy koala who cannot find a comfortable branch.
Write a scene in which two old friends meet by chance at an airport.
Write an opening paragraph for a novel about a detective who cannot remember faces.
Describe a futuristic city where cars are banned.
Help me write a toast for my parents' fortieth wedding anniversary.
Help me plan a surprise party for my roommate on a small budget.
Help me choose between two job offers: one pays more, the other is closer to home.
Suggest a name and a short bio for a friendly robot in a children's book.
Create five quiz questions about the solar system, with answers.
Make a list of ten things to do on a rainy Sunday with kids.
List the steps for making a paper airplane that flies far.
Explain how a bill becomes a law in the United States.
What does a project manager actually do all day?
How should I structure a five-paragraph essay?
What are good ways to memorize vocabulary in a new language?
How do I cite a website in APA style?
What are some tips for taking better photos with a phone?
How do I start a vegetable compost bin in a small garden?
Write a short poem about the first snow of winter, without using any commas.
Write a two-paragraph biography of a fictional inventor, and highlight one sentence in markdown.
Write a packing list for a beach holiday in a numbered list of exactly ten items.
Explain how a rainbow forms, in fewer than one hundred words.
Write a blog post about learning to cook at forty, with at least three section titles.
""".splitlines()
FILLERS = ("really", "basically", "actually", "honestly")
SYNONYMS = {
    "names": "titles", "famous": "renowned", "started": "began", "careers": "professions", "sister": "sibling",
    "explain": "describe", "played": "run", "advantage": "benefit", "trying": "attempting", "teach": "train",
    "nicer": "neater", "help": "assist", "solve": "finish", "never": "not", "need": "have", "gift": "present",
    "thinking": "considering", "options": "choices", "recently": "lately", "give": "provide", "list": "catalogue",
    "choose": "pick", "know": "learn", "get": "receive", "good": "great", "books": "novels", "buy": "purchase",
    "fan": "enthusiast", "see": "spot", "day": "daytime", "take": "look", "wooden": "timber", "table": "desk",
    "compose": "write", "engaging": "captivating", "recent": "latest", "highlighting": "featuring",
    "attractions": "sights", "draft": "write", "professional": "formal", "seeking": "requesting",
    "feedback": "comments", "prepared": "wrote", "short": "brief", "persuasive": "convincing", "convince": "persuade",
    "friend": "pal", "dislikes": "hates", "local": "nearby", "compelling": "strong", "concise": "brief",
    "describe": "depict", "vivid": "lively", "unique": "distinctive", "creative": "inventive", "fewer": "less",
    "descriptive": "evocative", "bustling": "busy", "smells": "scents", "immersive": "absorbing", "reader": "audience",
    "craft": "write", "intriguing": "gripping", "wakes": "gets", "find": "discover", "pretend": "imagine",
    "following": "next", "speak": "talk", "construct": "create", "catchy": "snappy", "accurate": "precise",
    "latest": "newest", "fresh": "new", "job": "position", "include": "add", "planning": "organizing",
    "trip": "journey", "allowed": "permitted", "response": "answer",
}  # fmt: skip


def _words_of(prompt: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9]+", prompt)


def _entities(prompt: str) -> str:
    """Every third letter as a decimal or hex character reference, quotes and ampersands by name."""
    out = []
    for i, c in enumerate(prompt):
        if c.isalpha() and i % 3 == 0:
            out.append(f"&#{ord(c)};" if i % 2 else f"&#x{ord(c):x};")
        else:
            out.append({"'": "&apos;", '"': "&quot;", "&": "&amp;"}.get(c, c))
    return "".join(out)


def _spaces(prompt: str) -> str:
    """Each space as a non-breaking space (entity, number or character) or another Unicode space separator."""
    seps = ("&nbsp;", "\u00a0", "&#160;", "\u2009", "\u202f", "\u3000", "&ensp;", "\u2007")
    parts = prompt.split(" ")
    return parts[0] + "".join(seps[i % len(seps)] + p for i, p in enumerate(parts[1:]))


def _comments(prompt: str) -> str:
    """An HTML comment in the middle of every word of four letters or more: `expl<!-- x -->ain`."""
    return re.sub(r"[A-Za-z]{4,}", lambda m: m[0][: len(m[0]) // 2] + "<!-- x -->" + m[0][len(m[0]) // 2 :], prompt)


def _leet(prompt: str) -> str:
    return prompt.translate(str.maketrans("aeiostAEIOST", "431057431057"))


def _swapped(prompt: str) -> str:
    ws = prompt.split()
    return " ".join(ws[len(ws) // 2 :] + ws[: len(ws) // 2])


def _filler(prompt: str) -> str:
    """A filler word after every third word of the prompt."""
    ws = prompt.split()
    return " ".join(w + (f" {FILLERS[i // 3 % len(FILLERS)]}" if i % 3 == 2 else "") for i, w in enumerate(ws))


def _synonyms(prompt: str, seed: int) -> str:
    """Two or three words (by the seed) replaced by a synonym, at places drawn by the seed."""
    ws = prompt.split()
    places = [i for i, w in enumerate(ws) if re.sub(r"\W", "", w).lower() in SYNONYMS]
    chosen = random.Random(seed).sample(places, min(len(places), 2 + seed % 2))
    for i in chosen:
        word = re.sub(r"\W", "", ws[i])
        ws[i] = ws[i].replace(word, SYNONYMS[word.lower()])
    return " ".join(ws)


VARIANTS = {  # kind -> (prompt, its index) -> the variant
    "tags": lambda p, i: " ".join(f"<span>{w}</span>" for w in p.split()),
    "entities": lambda p, i: _entities(p),
    "nbsp": lambda p, i: _spaces(p),
    "comments": lambda p, i: _comments(p),
    "underscores": lambda p, i: "_".join(w.lower() for w in _words_of(p)),
    "CamelCase": lambda p, i: "".join(w[:1].upper() + w[1:] for w in _words_of(p)),
    "leetspeak": lambda p, i: _leet(p),
    "swapped halves": lambda p, i: _swapped(p),
    "filler every third word": lambda p, i: _filler(p),
    "synonyms": _synonyms,
}
RENDERED_OR_JOINED = ("tags", "entities", "nbsp", "comments", "underscores", "CamelCase")


def caught(kind: str, index: BenchmarkIndex | None = None) -> list[str]:
    """The benchmark prompts whose `kind` variant matches its own prompt at the defaults."""
    index = index or BenchmarkIndex({"bench": BENCHMARK})
    out = []
    for i, prompt in enumerate(BENCHMARK):
        found = index.match(VARIANTS[kind](prompt, i))
        if found is not None and found.prompt == prompt:
            out.append(prompt)
    return out


def test_markup_is_read_as_a_browser_shows_it():
    assert words("<p>Wr<b>ite</b> a<br>po&#101;m</p><!-- hidden -->") == words("Write a poem")
    assert words("<div>one</div><div>two</div>") == words("one two")  # a block's tag ends a word
    assert words("Is 5 > 3 and 2 < 4?") == words("Is 5 3 and 2 4")  # a lone < or > is no tag
    assert render("&lt;span&gt; shows as text") == "<span> shows as text"  # a reference to markup is text
    assert words("expl@in h!gh p|ace, $5, e-mail@ 10!") == words("explain high place 5 e mail 10")


def test_words_joined_by_underscores_or_case_changes_are_set_apart():
    assert exact_key("write_a_poem_about_the_sea") == exact_key("Write a poem about the sea")
    assert exact_key("WriteAPoemAboutTheSea") == exact_key("write a poem about the sea")
    assert exact_key("ExplainIn200WordsHowHTMLWorks") == exact_key("explain in 200 words how html works")
    assert exact_key("JavaScript on an iPhone") == exact_key("javascript on an iphone")  # two parts: a name


def test_leetspeak_digits_read_as_the_letters_they_stand_for_and_numbers_stay_apart():
    assert exact_key("3xpl41n h0w 7h3 1mmun3 5y573m w0rk5") == exact_key("Explain how the immune system works")
    assert exact_key("Write 6 tips") != exact_key("Write 8 tips") == exact_key("Write b tips")
    assert len({exact_key(f"In {n} words") for n in range(1000)}) == 1000  # no two numbers read as one


def test_a_prompt_in_pairs_of_words_in_any_order():
    """Halves swapped, or a filler after every two words (one word in three): no 8-gram is left, nor the order, but
    every word lies in a pair of words the prompt holds; one word changed besides is spared (one in ten, as the order
    check spares), two are not: a text with two words of its own is another question."""
    ws = P.split()  # 18 words
    index = BenchmarkIndex({"b": [P]})
    swapped = " ".join(ws[9:] + ws[:9])
    assert (index.match(swapped).how, index.match(swapped).overlap) == ("pairs", 1.0)
    padded = " ".join(w + (" so" if i % 2 else "") for i, w in enumerate(ws))  # 27 words: 1.5 times as many
    assert (index.match(padded).how, index.match(padded).overlap) == ("pairs", 1.0)
    assert index.match(swapped + " Please answer for a young reader in a friendly way") is None  # 28 words
    assert index.match(swapped + " Please answer for a young reader in plain words").how == "pairs"  # 27
    one = swapped.replace("immune", "defence")
    assert (index.match(one).how, index.match(one).overlap) == ("pairs", round(17 / 18, 4))
    assert index.match(one.replace("human", "adult")) is None
    short = BenchmarkIndex({"b": ["Write a poem about the sea in winter."]})  # 8 words: none spared
    assert short.match("in winter. Write a poem about the sea").how == "pairs"
    assert short.match("winter. Write a poem about the sea in") is None  # a half of one word is in no pair


def test_in_pairs_takes_each_pair_of_the_longer_text_once():
    assert in_pairs(list("abcdefgh"), list("efghabcd")) == 8
    assert in_pairs(list("abcdefgh"), list("abcdefgx")) is None  # one of 8 words unpaired: none may be
    assert in_pairs(list("abcdefghij"), list("abcdefghix")) == 9  # one of 10 may
    assert in_pairs(list("abababab"), list("abxyzwvu")) is None  # "a b" once in the longer: 2 of 8 paired
    assert in_pairs(list("abcdefgh"), list("abcdefghxyzw")) == 8  # 12 words: 1.5 times 8
    assert in_pairs(list("abcdefgh"), list("abcdefghxyzwv")) is None  # 13: more


def test_the_pair_check_finds_what_checking_every_prompt_finds():
    """The pair check looks word by word only at prompts holding one of the text's rarest pairs: on texts made of
    prompts with their halves swapped, fillers inserted and words changed, over a vocabulary where a few words are
    common (pairs repeat, some are held by many prompts), it finds the same prompt as checking each one in turn."""
    rng = random.Random(5)
    vocab = [f"w{i}" for i in range(300)]
    weights = [1 / (i + 1) for i in range(300)]
    prompts = [" ".join(rng.choices(vocab, weights, k=rng.randint(8, 40))) for _ in range(200)]
    index = BenchmarkIndex({"b": prompts})
    found_in_pairs = 0
    for _ in range(600):
        ws = rng.choice(prompts).split()
        kind = rng.random()
        if kind < 0.4:
            cut = rng.randrange(1, len(ws))
            ws = ws[cut:] + ws[:cut]
        elif kind < 0.7:
            step = rng.randint(1, 4)
            ws = [x for i, w in enumerate(ws) for x in ([w, rng.choice(vocab)] if i % step == step - 1 else [w])]
        for _ in range(rng.randint(0, 4)):
            ws[rng.randrange(len(ws))] = rng.choice(vocab)
        text = " ".join(ws)
        found = index.match(text)
        if found is not None and found.how != "pairs":
            continue
        expected = None
        for p in prompts:
            mine, theirs = words(text), words(p)
            short, long = (theirs, mine) if len(theirs) <= len(mine) else (mine, theirs)
            if len(short) >= ORDER_WORDS and len(long) <= len(short) * LONGER and in_pairs(short, long) is not None:
                expected = p
                break
        assert (found.prompt if found else None) == expected, text
        found_in_pairs += found is not None
    assert found_in_pairs > 50


@pytest.mark.parametrize("kind", RENDERED_OR_JOINED)
def test_markup_and_joined_word_variants_of_benchmark_prompts_are_caught(kind):
    """Issue 66: at the defaults, none of the 20 prompts' variants of each kind was caught (2 with non-breaking
    spaces, where a few U+00A0 characters were already read as spaces); now at least 18 of 20 must be."""
    assert all(VARIANTS[kind](p, i) != p for i, p in enumerate(BENCHMARK))
    found = caught(kind)
    assert len(found) >= 18, [p for p in BENCHMARK if p not in found]


@pytest.mark.parametrize(
    "kind, least",  # caught before the issue: 0, 12, 9 and 9 of 20
    [("leetspeak", 18), ("swapped halves", 18), ("filler every third word", 18), ("synonyms", 9)],
)
def test_leetspeak_word_order_and_fillers_are_caught_and_synonyms_as_before(kind, least):
    """Leetspeak reads as the prompt; halves swapped and a filler every third word leave every word in a pair the
    prompt holds (the one prompt of 7 words is matched exactly only). Two or three synonyms are caught where one word
    in ten may change (prompts of 20 words or more), as before: sparing more would flag a templated prompt with its
    topic changed (test_a_templated_prompt_with_another_topic_is_not_flagged_in_pairs)."""
    assert all(VARIANTS[kind](p, i) != p for i, p in enumerate(BENCHMARK))
    found = caught(kind)
    assert len(found) >= least, [p for p in BENCHMARK if p not in found]


def test_unrelated_instructions_in_the_same_register_are_not_flagged():
    """200 instructions written as benchmark prompts are, many on the same topics or opening the same way ("What are
    the names of some famous painters ...", "Please give me a list of the largest moons in our solar system ..."):
    at most one matches a prompt."""
    index = BenchmarkIndex({"bench": BENCHMARK})
    flagged = [(text, index.match(text)) for text in UNRELATED if index.match(text) is not None]
    assert len(UNRELATED) == 200 and len(flagged) <= 1, flagged


TEMPLATES = (
    "Write a short piece about how {} affects people who live in large cities.",
    "What should a student know about how {} works, step by step, with a simple analogy?",
    "Describe for a beginner how {} is measured and what the numbers tell us.",
    "Give me a clear account of how {} changed over the last century and what drove the change.",
)
TOPICS = (  # a benchmark's topic, another one: no word in common
    ("jazz improvisation", "hip hop dance"),
    ("plate tectonics", "submarine cables"),
    ("classical ballet", "solar panels"),
    ("the immune system", "a heat pump"),
    ("compound interest", "street photography"),
    ("coral reefs", "wind turbines"),
)


def test_a_templated_prompt_with_another_topic_is_not_flagged():
    """The pair check spares no more words than the order check: a prompt of a template with its topic changed (two
    or three words of 13 to 17) asks another question, in pairs as in order. Sparing one word in five in pairs instead
    flags all 24 (and catches 16 of the 20 synonym variants, not 9)."""
    index = BenchmarkIndex({"b": [t.format(a) for t in TEMPLATES for a, _ in TOPICS]})
    flagged = [(text, index.match(text)) for text in (t.format(b) for t in TEMPLATES for _, b in TOPICS)]
    assert [(text, found) for text, found in flagged if found is not None] == []
