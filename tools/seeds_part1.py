SEEDS = [
    (
        "writing",
        "Write a short, friendly email to my team announcing that our weekly sync is moving from Monday to Wednesday afternoons, and explain why.",
        """Subject: Weekly sync moves to Wednesdays at 2 pm

Hi team,

Starting next week, our weekly sync will move from Monday mornings to **Wednesdays at 2:00 pm**. Same room, same video link, same 45 minutes.

**Why the change?**

- **Mondays were doing double duty.** Most of us spend Monday morning catching up on messages and planning the week, so the sync often arrived before anyone had a clear picture of what they were working on.
- **Midweek is a better checkpoint.** By Wednesday, the week's work is under way. Blockers are real rather than hypothetical, and there is still time to act on what we decide.
- **Fewer reschedules.** Over the last two months, five of our eight Monday syncs were shortened or moved because of public holidays or early-week deadlines. Wednesdays have been almost entirely free of conflicts.

**What stays the same**

The agenda doc stays where it is. Please add your updates by Tuesday evening so we can spend the meeting on decisions rather than status.

If Wednesday afternoons clash with something recurring on your calendar, reply to me directly this week and we'll work it out.

Thanks, everyone. See you Wednesday!

Best,
[Your name]""",
    ),
    (
        "writing",
        "Rewrite this sentence to be clearer and more concise: 'Due to the fact that the results of the survey were not received in a timely manner by the research team, the publication of the final report has been subject to a delay.'",
        """**Rewritten:** "The final report is delayed because the research team received the survey results late."

**What changed and why:**

1. **"Due to the fact that" → "because."** The five-word phrase says exactly what the single word does. Wordy connectors like this one ("in light of the fact that", "owing to the fact that") can almost always be replaced.

2. **Passive → active voice.** The original hides who did what: "the results... were not received... by the research team." Putting the team first ("the research team received") makes the sentence easier to follow.

3. **"Not received in a timely manner" → "received late."** Expressing a negative indirectly ("not timely") makes readers do extra work. "Late" is direct and means the same thing.

4. **"Has been subject to a delay" → "is delayed."** Turning the verb "delay" into a noun ("subject to a delay") is called nominalization. It adds words and drains energy from the sentence. Using the verb directly fixes both.

5. **Lead with the main point.** Readers most care that the report is late, so that now opens the sentence and the cause follows.

The result is 13 words instead of 38, with no loss of meaning.

If you want to keep the cause first, for example to stress that the delay was not the writers' fault, this also works: "Because the survey results arrived late, the final report is delayed." """,
    ),
    (
        "writing",
        "Write a product description for a reusable insulated water bottle aimed at hikers.",
        """**TrailKeep 750 Insulated Bottle**

*Cold water at the summit. Hot tea at the trailhead.*

The TrailKeep 750 is built for the long days: the ones that start before sunrise and end with tired legs and a view worth the climb.

**Keeps drinks the way you left them.** Double-wall vacuum insulation holds water cold for 24 hours and hot drinks warm for 12, even when the bottle sits in a sun-baked side pocket or a freezing tent vestibule.

**Light enough to forget about.** At 340 g empty, the TrailKeep weighs less than most insulated bottles its size. The 750 ml capacity fits standard pack pockets and bike cages.

**Made for gloves and dirt.** The wide-mouth lid has an oversized loop you can grab with cold fingers or clip to a carabiner. The mouth fits ice cubes and water filters, and is wide enough to scrub clean.

**Tough where it counts.** An 18/8 stainless steel body with a powder-coat finish resists dents and scratches and gives you grip when your hands are wet. There is no plastic liner and no metallic taste.

**Leak-proof, actually.** A silicone gasket and a threaded lid seal completely, so you can pack the bottle sideways next to your down jacket without worry.

**Good for the trails you love.** One TrailKeep replaces hundreds of single-use bottles. Every part is replaceable, and the lid and gasket are sold separately, so a worn seal never means a new bottle.

*Dishwasher-safe lid. Hand-wash the body to protect the finish.*""",
    ),
    (
        "writing",
        "Write a cover letter opening paragraph for a junior data analyst position at a public health nonprofit. I have a statistics degree and volunteered at a food bank.",
        """Here is an opening paragraph you can adapt:

"Dear Hiring Committee,

When I volunteered at the Eastside Community Food Bank, I noticed that our weekly distribution numbers lived in a dozen disconnected spreadsheets, and no one could say which neighborhoods we were missing. Over two months I merged those records, mapped visits by ZIP code, and showed the coordinators that two apartment complexes less than a mile away had almost no visitors. That led to a new satellite pickup site. The experience showed me what I want from my career: using careful analysis to help organizations reach the people who need them most. With a B.S. in Statistics and hands-on experience turning messy community data into decisions, I am excited to apply for the Junior Data Analyst position at [Organization]."

**Why this opening works**

- **It starts with a story, not a summary.** Hiring managers read many letters that begin "I am writing to apply for...". A concrete moment is more memorable.
- **It shows skills instead of listing them.** Data cleaning, merging, geographic analysis and communicating findings all appear through what you did.
- **It links your values to their mission.** A public health nonprofit wants analysts who care about access and equity, and the food bank story signals that naturally.
- **It names the role and your degree** by the end of the paragraph, so the reader knows exactly why you are writing.

**Before you send it:** replace the details with your real ones. If your volunteer work did not involve data, lead with a statistics project that touched health or community outcomes instead, and keep the food bank as evidence of your commitment.""",
    ),
    (
        "writing",
        "Explain the difference between 'affect' and 'effect' with examples I can remember.",
        """The short version: **affect is usually a verb (an action), effect is usually a noun (a result).**

**The everyday rule**

- **Affect** = to influence something.
  - *The cold weather affected my mood.*
  - *How will the new policy affect small businesses?*
- **Effect** = the result or outcome.
  - *The cold weather had an effect on my mood.*
  - *The new policy's effects on small businesses are unclear.*

**A memory trick:** *A*ffect is an *A*ction; *E*ffect is an *E*nd result. Or remember **RAVEN**: **R**emember, **A**ffect is a **V**erb, **E**ffect is a **N**oun.

A quick test: if you can put "the" or "an" in front of it, you want *effect*. "The effect" works; "the affect" almost never does in everyday writing.

**The two exceptions** (less common, but good to know):

1. **Effect as a verb** means "to bring about" or "to make happen." It usually appears with words like *change*.
   - *The new manager effected major changes* = she caused the changes to happen.
   - Compare: *The new manager affected major changes* = she influenced changes that were already happening.

2. **Affect as a noun** is a term from psychology for a person's visible emotional expression.
   - *The patient had a flat affect.*

**Practice:** fill in the blanks.
- The medication had no noticeable ___ . (*effect*)
- Lack of sleep can ___ your concentration. (*affect*)
- The reforms ___ a shift in how schools are funded. (*effected*: they brought the shift about)

If you are ever unsure, "influence" (verb) and "result" (noun) are safe substitutes.""",
    ),
    (
        "coding",
        "Write a Python function that checks whether a string is a palindrome, ignoring case, spaces and punctuation.",
        """Here is a clear, efficient solution:

```python
def is_palindrome(text: str) -> bool:
    \"\"\"Return True if text reads the same forwards and backwards,
    ignoring case, whitespace and punctuation.\"\"\"
    cleaned = [ch.lower() for ch in text if ch.isalnum()]
    return cleaned == cleaned[::-1]
```

**How it works**

1. `ch.isalnum()` keeps only letters and digits, which drops spaces and punctuation.
2. `ch.lower()` makes the comparison case-insensitive.
3. `cleaned[::-1]` is the list reversed; if it equals the original, the text is a palindrome.

**Examples**

```python
is_palindrome("A man, a plan, a canal: Panama")   # True
is_palindrome("No 'x' in Nixon")                   # True
is_palindrome("Hello, world")                      # False
is_palindrome("")                                  # True (an empty string reads the same both ways)
```

**A version that uses constant extra memory**

The first version builds a new list, which is fine for most inputs. For very large strings, you can compare from both ends with two pointers instead:

```python
def is_palindrome_two_pointer(text: str) -> bool:
    left, right = 0, len(text) - 1
    while left < right:
        if not text[left].isalnum():
            left += 1
        elif not text[right].isalnum():
            right -= 1
        elif text[left].lower() != text[right].lower():
            return False
        else:
            left += 1
            right -= 1
    return True
```

Both run in O(n) time. The second uses O(1) extra space and stops as soon as it finds a mismatch.

**Note on Unicode:** `str.isalnum()` and `str.lower()` handle most languages, but for inputs like the German "ß", use `casefold()` instead of `lower()` for a more thorough case-insensitive comparison.""",
    ),
    (
        "coding",
        "What is the difference between a list and a tuple in Python, and when should I use each?",
        """Both lists and tuples are ordered sequences that can hold items of any type, but they differ in one key way: **lists are mutable, tuples are immutable.**

| | List | Tuple |
|---|---|---|
| Syntax | `[1, 2, 3]` | `(1, 2, 3)` |
| Can change after creation | Yes: append, remove, reassign items | No |
| Hashable (usable as dict key or set member) | No | Yes, if all its items are hashable |
| Typical meaning | A collection of similar things | A fixed record of related values |
| Memory and speed | Slightly larger | Slightly smaller, slightly faster to create |

**Use a list when** the collection will grow, shrink or change:

```python
tasks = ["write report", "email Sam"]
tasks.append("book flights")
tasks.sort()
```

**Use a tuple when** the values belong together as one fixed unit, and position gives meaning:

```python
point = (3.5, -1.2)           # x, y
rgb = (255, 128, 0)
def min_max(values):
    return min(values), max(values)  # returns a tuple
low, high = min_max([4, 9, 1])
```

**Tuples as dictionary keys.** Because tuples are hashable, they work well as composite keys:

```python
distances = {("Paris", "Berlin"): 878, ("Paris", "Madrid"): 1054}
```

A list cannot be used this way.

**A common pitfall:** a tuple is immutable, but the objects inside it may not be.

```python
t = ([1, 2], 3)
t[0].append(99)   # allowed: the list inside changed
t[0] = [5]        # TypeError: the tuple itself cannot change
```

**Rule of thumb:** if you would describe it as "a bunch of X" (a list of users, a list of scores), use a list. If you would describe it as "an X made of these parts" (a coordinate, a date, a database row), use a tuple. For records with many fields, consider `namedtuple` or a `dataclass` so fields have names.""",
    ),
    (
        "coding",
        "Explain what a SQL JOIN is and show the difference between INNER JOIN and LEFT JOIN with an example.",
        """A **JOIN** combines rows from two tables based on a related column, usually a key that one table shares with another.

**Example tables**

`customers`

| id | name |
|----|------|
| 1 | Ana |
| 2 | Ben |
| 3 | Chen |

`orders`

| id | customer_id | total |
|----|-------------|-------|
| 10 | 1 | 25.00 |
| 11 | 1 | 40.00 |
| 12 | 3 | 15.00 |

Ben (id 2) has no orders.

**INNER JOIN: only the matches**

```sql
SELECT c.name, o.total
FROM customers c
INNER JOIN orders o ON o.customer_id = c.id;
```

| name | total |
|------|-------|
| Ana | 25.00 |
| Ana | 40.00 |
| Chen | 15.00 |

Ben disappears because there is no order row that matches him.

**LEFT JOIN: everything from the left table, matched where possible**

```sql
SELECT c.name, o.total
FROM customers c
LEFT JOIN orders o ON o.customer_id = c.id;
```

| name | total |
|------|-------|
| Ana | 25.00 |
| Ana | 40.00 |
| Ben | NULL |
| Chen | 15.00 |

Ben appears with `NULL` in the order columns, because a LEFT JOIN keeps every row of the left table (`customers`) whether or not it has a match.

**When to use which**

- Use **INNER JOIN** when you only care about records that exist in both tables: "show me all orders with the customer's name."
- Use **LEFT JOIN** when the left table is your full list and the right table is optional detail: "show me every customer and their orders, if any."

**A useful LEFT JOIN pattern** is finding rows with no match:

```sql
SELECT c.name
FROM customers c
LEFT JOIN orders o ON o.customer_id = c.id
WHERE o.id IS NULL;   -- customers who never ordered: Ben
```

One thing to watch: joins can multiply rows. Ana appears twice because she has two orders, so aggregate (`SUM`, `COUNT`) carefully after a join.""",
    ),
    (
        "coding",
        "My JavaScript code prints 'undefined' instead of the data from my API call. Here's the code:\n\nfunction getUser() {\n  let user;\n  fetch('/api/user').then(r => r.json()).then(data => { user = data; });\n  return user;\n}\nconsole.log(getUser());",
        """The problem is timing. `fetch` is **asynchronous**: it starts the request and returns immediately, and the `.then` callbacks run later, once the response arrives. Your function reaches `return user;` before `user = data` has ever run, so it returns `undefined`.

Here is the order in which things actually happen:

1. `let user;` (user is `undefined`)
2. `fetch(...)` starts the request and schedules the callbacks
3. `return user;` returns `undefined`
4. `console.log` prints `undefined`
5. ...later, the response arrives and `user = data` runs, but nobody is waiting for it.

**Fix: return the promise and wait for it**

With `async`/`await` (the clearest option):

```javascript
async function getUser() {
  const response = await fetch('/api/user');
  if (!response.ok) {
    throw new Error(`Request failed: ${response.status}`);
  }
  return response.json();
}

// The caller must wait too:
async function main() {
  try {
    const user = await getUser();
    console.log(user);
  } catch (err) {
    console.error('Could not load user:', err);
  }
}
main();
```

Or with plain promises:

```javascript
function getUser() {
  return fetch('/api/user').then(r => r.json());
}

getUser().then(user => console.log(user));
```

**Key points**

- An asynchronous result can't be returned as a plain value from a synchronous function. Return the **promise**, and let the caller `await` it or use `.then`.
- `async` functions always return a promise, so everything that uses the result must wait for it as well. This "spreads" up the call chain, which is normal.
- Check `response.ok`: `fetch` only rejects on network failure, not on HTTP errors like 404 or 500, so without the check a failed request quietly tries to parse an error page.""",
    ),
    (
        "coding",
        "Write a bash one-liner that finds the 10 largest files under the current directory.",
        """```bash
find . -type f -exec du -h {} + | sort -rh | head -n 10
```

**What each part does**

- `find . -type f` lists every regular file under the current directory, recursively.
- `-exec du -h {} +` runs `du` (disk usage) on the files in large batches; `-h` prints human-readable sizes like `4.2M`.
- `sort -rh` sorts by those human-readable sizes (`-h`), largest first (`-r`).
- `head -n 10` keeps the top ten.

Sample output:

```
1.2G    ./videos/demo.mp4
340M    ./data/export.csv
...
```

**Variations**

Exact sizes in bytes (useful for scripts), with GNU `find`:

```bash
find . -type f -printf '%s %p\\n' | sort -rn | head -n 10
```

Skip a directory such as `.git` or `node_modules`:

```bash
find . -path ./node_modules -prune -o -type f -exec du -h {} + | sort -rh | head -n 10
```

Stay on one filesystem, so you don't descend into mounted drives:

```bash
find . -xdev -type f -exec du -h {} + | sort -rh | head -n 10
```

**Notes**

- On macOS, the default `sort` supports `-h` on recent versions; `-printf` is GNU-only, so use the `du` version there.
- `du` reports space used on disk, which can differ slightly from the file's logical size (for example, for sparse files). The `-printf '%s'` version gives the logical size.
- If you are looking for what is filling a disk, `du -h --max-depth=1 | sort -rh` shows the largest *directories* first, which is often a faster way to find the culprit.""",
    ),
    (
        "coding",
        "Explain Big-O notation to someone who just started learning programming.",
        """Big-O notation describes **how the work an algorithm does grows as its input gets bigger.** It doesn't measure seconds. It measures the *shape* of the growth.

**An analogy**

Imagine looking for a friend's name in different ways:

- **O(1), constant:** you know they're on page 42. However long the phone book is, it's one step.
- **O(log n), logarithmic:** you open the book in the middle, see if the name comes before or after, and halve the search again. A book twice as long takes just one more step.
- **O(n), linear:** you read every name from the start. Twice as many names, twice the work.
- **O(n²), quadratic:** for every name, you compare it with every other name (say, to find duplicates). Twice as many names, four times the work.

**In code**

```python
def first_item(items):        # O(1)
    return items[0]

def contains(items, target):  # O(n)
    for x in items:
        if x == target:
            return True
    return False

def has_duplicate(items):     # O(n²)
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            if items[i] == items[j]:
                return True
    return False
```

**Why it matters**

For 1,000 items, an O(n) loop does about 1,000 steps, while an O(n²) one does about 1,000,000. At a million items, that's a million steps versus a trillion: seconds versus days.

**Two rules that make it simple**

1. **Drop constants:** O(2n) is just O(n). We care about growth, not exact counts.
2. **Keep the biggest term:** O(n² + n) is O(n²), because for large n the square dominates.

**A practical takeaway:** `has_duplicate` above can become O(n) by using a set, which remembers what you've seen:

```python
def has_duplicate_fast(items):
    seen = set()
    for x in items:
        if x in seen:
            return True
        seen.add(x)
    return False
```

Spotting the nested loop and replacing it with a smarter data structure is the most common way Big-O thinking makes your code faster.""",
    ),
    (
        "math",
        "A shirt is on sale for 20% off, and then an additional 10% is taken off the sale price at checkout. Is that the same as 30% off? Explain.",
        """No, it's **28% off**, not 30%. The second discount is applied to a price that has already been reduced, so it takes off less money than 10% of the original would.

**Work it through with a $50 shirt**

1. 20% off $50: $50 × 0.80 = **$40**
2. Another 10% off the $40: $40 × 0.90 = **$36**

You pay $36, which is $14 off the original $50.

$14 ÷ $50 = 0.28, so **28% off**.

A straight 30% discount would give $50 × 0.70 = **$35**, one dollar less.

**The general rule**

Successive discounts multiply; they don't add:

Final price = Original × (1 − d₁) × (1 − d₂)

Here: 0.80 × 0.90 = 0.72, so you pay 72% of the original price, a 28% discount.

A quick shortcut for two discounts: total discount = d₁ + d₂ − (d₁ × d₂) = 20% + 10% − 2% = **28%**. The subtracted term, 2%, is the "discount on the discount" that you don't get.

**Does the order matter?** No. 10% off and then 20% off gives 0.90 × 0.80 = 0.72 as well, because multiplication is commutative.

**Why stores do this:** "20% + an extra 10%" sounds like 30%, but it costs the store less. When you compare offers, convert every deal to the final price you would pay.""",
    ),
    (
        "math",
        "Solve for x: 3(x − 4) + 2 = 2x + 5. Show each step.",
        """**Solve 3(x − 4) + 2 = 2x + 5**

**Step 1: Distribute the 3 on the left side.**

3 · x − 3 · 4 + 2 = 2x + 5

3x − 12 + 2 = 2x + 5

**Step 2: Combine like terms on the left.**

−12 + 2 = −10, so:

3x − 10 = 2x + 5

**Step 3: Get the x terms on one side.** Subtract 2x from both sides:

3x − 2x − 10 = 5

x − 10 = 5

**Step 4: Isolate x.** Add 10 to both sides:

x = 15

**Step 5: Check the answer** by substituting x = 15 into the original equation.

- Left side: 3(15 − 4) + 2 = 3(11) + 2 = 33 + 2 = **35**
- Right side: 2(15) + 5 = 30 + 5 = **35**

Both sides equal 35, so **x = 15** is correct.

**Tips for equations like this**

- Clear parentheses first, then simplify each side before moving terms across.
- Whatever you do to one side, do to the other. That is what keeps the equation balanced.
- Moving x terms to the side with the larger coefficient (here, the left, since 3 > 2) keeps the x coefficient positive and avoids sign mistakes.
- Always check by substitution. It takes thirty seconds and catches most arithmetic slips.""",
    ),
    (
        "math",
        "What is the probability of rolling at least one six in four rolls of a fair die?",
        """The probability is about **51.8%**.

**The trick: use the complement**

"At least one six" can happen in many ways: a six on the first roll, on the second, on two of them, and so on. Counting those directly is messy. It's much easier to find the probability of the opposite event, **no sixes at all**, and subtract it from 1.

**Step 1: Probability of not rolling a six on one roll**

There are 5 non-six faces out of 6: P(not six) = 5/6

**Step 2: Probability of no sixes in four rolls**

The rolls are independent, so multiply:

P(no sixes) = (5/6)⁴ = 625/1296 ≈ 0.482

**Step 3: Subtract from 1**

P(at least one six) = 1 − 625/1296 = 671/1296 ≈ **0.518**

**A common mistake**

It's tempting to reason "each roll has a 1/6 chance, so four rolls give 4/6 ≈ 67%." That overcounts: it treats outcomes with two or more sixes as separate wins. Taken further, the same reasoning would say six rolls give 6/6 = 100%, which is clearly false, since you can roll six times without seeing a six.

**A bit of history**

This exact question made history. In the 1650s, the gambler Chevalier de Méré knew this bet was slightly favorable, but he lost money on a similar one: at least one double six in 24 rolls of two dice. That probability is 1 − (35/36)²⁴ ≈ 49.1%, just under even odds. He asked Blaise Pascal about it, and Pascal's letters with Pierre de Fermat helped found probability theory.

**General formula:** the chance of at least one success in n independent tries, each with probability p, is 1 − (1 − p)ⁿ.""",
    ),
    (
        "math",
        "Explain what a derivative is in calculus, intuitively, without heavy notation.",
        """A derivative measures **how fast something is changing at a single instant.**

**Start with speed**

If you drive 120 km in 2 hours, your *average* speed is 60 km/h. But your speedometer shows something different: how fast you're going *right now*. That instantaneous speed is a derivative: the rate at which your position is changing at this moment.

**How do you get "right now" from averages?**

Take shorter and shorter time windows:

- Over the last hour you averaged 60 km/h.
- Over the last minute, 72 km/h.
- Over the last second, 71.8 km/h.
- Over the last hundredth of a second, 71.79 km/h.

As the window shrinks toward zero, the averages settle on one number. That limiting value is the derivative. This idea of "zooming in until averages become an instant" is the core of calculus.

**The picture: slopes**

Draw a curved graph. Between two points on the curve, a straight line (a *secant*) has a slope that is an average rate of change. Slide the two points together and the line becomes a *tangent*: it just touches the curve at one point. The derivative is the **slope of that tangent**, the steepness of the curve at exactly that spot.

- A positive derivative means the graph is going up there.
- A negative derivative means it's going down.
- A zero derivative means it's momentarily flat, which is often a peak or a valley. That's why derivatives are used to find maximums and minimums.

**Where it shows up**

- Physics: velocity is the derivative of position; acceleration is the derivative of velocity.
- Economics: marginal cost is how much the total cost changes for one more unit produced.
- Machine learning: training a model means following derivatives "downhill" to reduce error.

**One example:** for the curve y = x², the derivative is 2x. At x = 3 the curve rises with slope 6; at x = 0 it's flat; at x = −1 it falls with slope −2.""",
    ),
    (
        "math",
        "How do I calculate compound interest? If I invest $5,000 at 6% per year compounded monthly, how much will I have after 10 years?",
        """**The compound interest formula**

A = P (1 + r/n)^(n·t)

- **A** = final amount
- **P** = principal (starting amount): $5,000
- **r** = annual interest rate as a decimal: 0.06
- **n** = compounding periods per year: 12 (monthly)
- **t** = number of years: 10

**Plug in the numbers**

1. Rate per period: r/n = 0.06 / 12 = 0.005
2. Number of periods: n·t = 12 × 10 = 120
3. Growth factor: (1.005)¹²⁰ ≈ 1.8194
4. Final amount: A = 5,000 × 1.8194 ≈ **$9,096.98**

So you earn about **$4,097** in interest.

**How compounding frequency matters**

| Compounding | Amount after 10 years |
|---|---|
| Simple interest (no compounding) | $8,000.00 |
| Yearly | $8,954.24 |
| Monthly | $9,096.98 |
| Daily | $9,110.14 |

More frequent compounding helps, but with diminishing returns. The big jump is from simple to compound interest, because each period you earn interest on your earlier interest.

**Quick estimate: the Rule of 72**

Divide 72 by the annual percentage rate to estimate how many years it takes to double your money: 72 ÷ 6 = **12 years**. That matches: after 10 years you're at about 1.82× and still short of doubling.

**To compute it yourself**

- Spreadsheet: `=5000*(1+0.06/12)^(12*10)`, or `=FV(0.06/12, 120, 0, -5000)`
- Python: `5000 * (1 + 0.06/12) ** 120`

**Caveats:** real returns on investments such as stock funds vary year to year, so 6% is best treated as an average. Taxes and fees reduce the effective rate, and inflation reduces what the final amount will buy.""",
    ),
    (
        "science",
        "Why is the sky blue?",
        """The sky is blue because of how sunlight **scatters** off the molecules in the air, a process called **Rayleigh scattering**.

**Sunlight contains every color**

White sunlight is a mix of all visible wavelengths, from red (long, around 700 nm) to violet (short, around 400 nm).

**Air scatters short wavelengths much more**

The nitrogen and oxygen molecules in the atmosphere are far smaller than the wavelength of visible light. For particles this small, the amount of scattering rises steeply as the wavelength gets shorter: in proportion to 1/λ⁴. So blue light (about 450 nm) scatters roughly **5 to 6 times more** than red light (about 700 nm).

As sunlight passes through the air, blue light is bounced in every direction, across the whole sky. Wherever you look away from the Sun, you see this scattered blue light coming toward you.

**Then why not violet?**

Violet scatters even more than blue, but:

1. The Sun emits less violet than blue.
2. Some violet is absorbed high in the atmosphere.
3. Our eyes are much less sensitive to violet. The cone cells in the retina respond most strongly to the blue-green range.

The mix our eyes receive is perceived as sky blue.

**Sunsets are the same effect in reverse**

At sunrise and sunset, sunlight travels through much more atmosphere to reach you. By the time it arrives, most of the blue has been scattered out of the direct beam, leaving the reds and oranges. Dust and smoke can make sunsets even more vivid.

**Clouds are white** because their water droplets are much larger than the wavelength of light. Large particles scatter all colors about equally (Mie scattering), so the light stays white.

**On Mars** the daytime sky looks butterscotch because of fine reddish dust, and its sunsets look bluish, the opposite of ours.""",
    ),
    (
        "science",
        "How do vaccines train the immune system?",
        """Vaccines work by giving your immune system a **safe preview** of a germ, so it can prepare its defenses before you ever meet the real thing.

**1. Showing the immune system a "wanted poster"**

Every germ carries molecules called **antigens**, usually proteins on its surface, that the immune system can recognize as foreign. A vaccine delivers these antigens without causing the disease. Depending on the vaccine type, it contains:

- a **weakened** live germ (measles, mumps, rubella),
- an **inactivated** (killed) germ (most flu shots, polio IPV),
- just a **piece** of the germ, such as a protein (hepatitis B, HPV),
- or **instructions** for making that piece: mRNA or viral-vector vaccines (several COVID-19 vaccines). Your cells briefly build the protein, and the instructions break down within days.

**2. The immune response**

- **Antigen-presenting cells** pick up the antigen and show it to **T cells**, the coordinators of the response.
- **Helper T cells** activate **B cells** that match the antigen.
- Those B cells multiply and produce **antibodies**, proteins that latch onto the germ and neutralize it or mark it for destruction.
- **Killer T cells** learn to recognize and destroy infected cells.

Mild side effects such as a sore arm, tiredness or a low fever are signs that this process is under way.

**3. Memory: the real goal**

After the response fades, long-lived **memory B cells and memory T cells** stay in the body, sometimes for decades. If the real germ shows up later, they recognize it immediately and mount a response that is faster and much stronger, often stopping the infection before you feel sick or keeping the illness mild.

**Why some vaccines need boosters**

Memory can weaken over time, and some germs (like influenza) change their antigens. Boosters refresh the memory or update the "wanted poster."

**Community protection:** when enough people are immune, a germ struggles to spread, which protects people who cannot be vaccinated, such as newborns or people with certain medical conditions.""",
    ),
    (
        "science",
        "What causes the seasons on Earth?",
        """The seasons are caused by the **tilt of Earth's axis**, not by changes in our distance from the Sun.

**The tilt**

Earth's axis is tilted about **23.4°** relative to its orbit, and it keeps pointing in the same direction in space (toward Polaris, the North Star) all year. As Earth travels around the Sun, this means:

- Around **June**, the Northern Hemisphere leans toward the Sun.
- Around **December**, the Southern Hemisphere leans toward the Sun.

**Why leaning toward the Sun means summer**

Two effects work together:

1. **More direct sunlight.** When the Sun is high in the sky, its rays hit the ground nearly head-on, concentrating energy on a smaller area. In winter, the low Sun spreads the same sunlight over a larger area, like a flashlight beam hitting a wall at a slant, so each square meter gets less energy.
2. **Longer days.** The hemisphere tilted toward the Sun gets more hours of daylight, and so more hours of heating. In summer, London gets about 16.5 hours of daylight; in winter, fewer than 8.

**The common misconception**

Many people assume summer happens when Earth is closest to the Sun. But Earth's orbit is nearly circular, and we are actually **closest in early January**, during the Northern Hemisphere's winter. If distance drove the seasons, both hemispheres would have summer at the same time. Instead, their seasons are opposite, which only the tilt explains.

**Key dates**

- **Solstices** (around June 21 and December 21): the most extreme tilt toward or away from the Sun; the longest and shortest days.
- **Equinoxes** (around March 20 and September 22): neither hemisphere leans toward the Sun, and day and night are roughly equal everywhere.

**Near the equator**, the Sun is high all year, so there are no strong temperature seasons; seasons there are often defined by rainfall instead.""",
    ),
    (
        "science",
        "Explain how a refrigerator keeps food cold.",
        """A refrigerator doesn't create cold. It **moves heat** from inside the box to the room outside. It does this by circulating a special fluid, the **refrigerant**, that absorbs heat when it evaporates and releases heat when it condenses.

**The key physics**

When a liquid evaporates, it absorbs heat from its surroundings (that's why wet skin feels cool in a breeze). When a gas condenses back into a liquid, it releases that heat. And the temperature at which a fluid boils depends on pressure: lower pressure, lower boiling point.

**The cycle, in four steps**

1. **Evaporator (inside the fridge).** Low-pressure liquid refrigerant flows through coils inside the fridge. At this low pressure it boils at well below freezing, so it evaporates and absorbs heat from the food compartment.

2. **Compressor (usually at the bottom back).** The compressor, the part you hear humming, squeezes the refrigerant gas. Compressing it raises its pressure and temperature, so it ends up hotter than the room.

3. **Condenser (the coils on the back or underneath).** The hot gas flows through these coils and gives off heat to the kitchen air. As it cools, it condenses back into a liquid. This is why the back of a fridge feels warm.

4. **Expansion valve.** The high-pressure liquid passes through a narrow valve or tube, and its pressure drops sharply. That makes it very cold, ready to absorb heat again in the evaporator.

Then the cycle repeats. A **thermostat** switches the compressor on and off to hold the temperature you set.

**Practical takeaways**

- Keep the condenser coils dusted and leave space behind the fridge. The heat has to escape somewhere, and blocked coils make the compressor work harder.
- Don't put hot food straight in when you can let it cool a little first; every bit of heat inside has to be pumped out.
- Your kitchen actually gets slightly **warmer** overall, because the fridge releases the heat from inside plus the energy the compressor uses.""",
    ),
]
