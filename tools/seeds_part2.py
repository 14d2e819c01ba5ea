SEEDS = [
    (
        "science",
        "What is the difference between weather and climate?",
        """**Weather** is what the atmosphere is doing at a particular place and time. **Climate** is the pattern of weather over a long period, typically 30 years or more.

A common way to put it: *climate is what you expect; weather is what you get.*

| | Weather | Climate |
|---|---|---|
| Time scale | Minutes to weeks | Decades to centuries |
| Question it answers | "Should I bring an umbrella today?" | "What kind of coat should I own if I live here?" |
| Examples | A thunderstorm this afternoon; a heat wave next week | Seattle's wet winters; the Sahara's aridity |
| Described by | Current temperature, rain, wind, humidity | Averages, ranges and extremes of those over time |

**Why the distinction matters**

- **One cold day doesn't disprove warming.** Weather varies enormously from day to day. Climate change is a shift in the long-term averages and extremes, and shows up across many years and many places.
- **Forecasts and projections answer different questions.** Weather forecasts become unreliable beyond about ten days, because small uncertainties in the atmosphere grow quickly. Climate projections don't try to predict the weather on a specific day in 2050; they estimate how the statistics change: average temperature, how often heat waves occur, how heavy rainfall gets.

**An analogy:** weather is like your mood on a given day; climate is like your personality. A cheerful person can have a bad day, but you'd describe them by how they usually are.

**How climate is measured**

Scientists combine long records from weather stations, ocean buoys, satellites and weather balloons, and for the distant past they use "proxies" such as tree rings, ice cores and ocean sediments. Averaging over 30 years filters out the noise of individual seasons and reveals the underlying trend.""",
    ),
    (
        "advice",
        "I have a job interview next week and I get very nervous. How can I prepare so I feel more confident?",
        """Feeling nervous before an interview is normal; it usually means you care about the outcome. The most reliable way to turn nerves into confidence is **preparation you can lean on** when adrenaline kicks in.

**1. Prepare your stories, not a script**

Interviewers mostly ask versions of the same questions. Prepare 5–6 short stories from your experience that show your strengths: a problem you solved, a conflict you handled, a mistake you learned from, something you're proud of. Use the **STAR** structure (Situation, Task, Action, Result) and keep each to about two minutes. One good story can answer several different questions.

**2. Research the company and the role**

Read the job description closely and match each key requirement to one of your stories. Look at the company's website, recent news and, if possible, the interviewers' LinkedIn profiles. Prepare 2–3 genuine questions to ask them. It shows interest and turns the interview into a conversation.

**3. Practice out loud**

Thinking through answers is not the same as saying them. Rehearse with a friend, or record yourself on your phone. By the third run-through you'll hear yourself becoming smoother, and that familiarity is what calms you on the day.

**4. Handle the physical side of nerves**

- **Slow breathing:** before you go in, breathe in for 4 counts and out for 6, a few times. A long exhale settles the body's stress response.
- **Reframe the feeling:** research suggests that telling yourself "I'm excited" works better than "calm down," because excitement and anxiety feel physically similar.
- **Pause before answering.** A two-second pause comes across as thoughtful, not hesitant.

**5. Remove day-of uncertainty**

Lay out your clothes, check the route or test your video setup, and plan to arrive 10 minutes early. Fewer small worries leave more attention for the conversation.

**Finally, remember the interview goes both ways.** You are also finding out whether this job is right for you. Going in curious rather than on trial takes a lot of the pressure off.""",
    ),
    (
        "advice",
        "How can I save money on groceries without eating poorly?",
        """You can cut grocery costs considerably while still eating well. The biggest savings come from **planning and reducing waste**, not from buying the cheapest food.

**1. Plan before you shop**

- **Plan meals for the week** around what's already in your fridge and what's on sale.
- **Make a list and stick to it.** Unplanned purchases account for a large share of grocery spending.
- **Don't shop hungry.** It reliably leads to extra snacks and impulse buys.

**2. Waste less of what you buy**

An average household throws away a large fraction of the food it buys, so this is often the single biggest saving.

- Cook recipes that share ingredients: a bunch of cilantro can go into tacos on Monday and a rice bowl on Wednesday.
- Cook once, eat twice: soups, stews, chili and grain dishes make great leftovers and freeze well.
- Freeze bread, ripe bananas and cooked grains before they go bad.

**3. Buy nutritious foods that are also cheap**

- **Dried beans and lentils:** protein and fiber for pennies per serving.
- **Whole grains in bulk:** oats, brown rice, pasta.
- **Eggs,** one of the cheapest high-quality proteins.
- **Frozen fruit and vegetables:** as nutritious as fresh, no waste, and often cheaper.
- **Seasonal produce:** it's cheaper when it's abundant.
- **Canned fish** such as sardines, salmon or tuna.

**4. Shop smarter**

- Compare **unit prices** (price per kilo or per ounce), not package prices.
- Try **store brands**: for staples like flour, canned tomatoes and frozen vegetables they are usually just as good.
- Buy meat in larger packs when it's on sale and freeze it in portions, or make meat a side rather than the center of the plate a few nights a week.

**5. Cut the costly conveniences**

Pre-cut vegetables, single-serve snacks, bottled drinks and ready meals carry large markups. Spending 15 minutes cutting vegetables on Sunday can save a noticeable amount each month.

**Start small:** pick two of these this week, such as a meal plan and a meatless night, and see what your receipt says before adding more.""",
    ),
    (
        "advice",
        "My roommate keeps leaving dirty dishes in the sink for days. How do I bring it up without starting a fight?",
        """This is one of the most common roommate conflicts, and the good news is that it's usually solvable with one calm, direct conversation. Here's how to set it up well.

**1. Pick the right moment**

Don't raise it when you're annoyed, right after finding a full sink, or when they're rushing out the door. Ask for a few minutes at a relaxed time: "Hey, do you have a minute later to talk about kitchen stuff?"

**2. Describe the problem, not their character**

Compare:

- ❌ "You're so messy. You never clean up after yourself."
- ✅ "When dishes sit in the sink for a few days, it starts to smell and I can't use the sink to cook. It's been bothering me."

The second version sticks to specific behavior and its effect on you, which is much harder to argue with and doesn't make them defensive.

**3. Assume good intentions and ask for their view**

They may not realize it bothers you, or they may have different standards, a brutal work schedule, or a grievance of their own. Ask: "How do you see it? Is there something that would make it easier?" Listening first makes them far more likely to listen to you.

**4. Agree on something concrete**

Vague promises ("I'll be better") fade in a week. Aim for a specific rule you both accept, for example:

- Dishes washed by the end of the same day, or before bed.
- Each person washes their own dishes; shared pots are cleaned by whoever cooked.
- A simple chore rotation for the kitchen.
- If one of you hates dishes and the other hates, say, bathrooms, trade chores.

**5. Follow up lightly**

If it slips, a friendly, low-key reminder the same day works better than saving it up: "Hey, a few of your dishes are still in the sink." If the agreement isn't working after a few weeks, have a second conversation about adjusting it rather than giving up.

**What to avoid:** passive-aggressive notes, piling their dishes on their bed, or complaining to other roommates first. These tend to escalate the conflict and make the actual problem harder to fix.""",
    ),
    (
        "advice",
        "I want to start running but I've never exercised regularly. How should I begin?",
        """Great goal. The most important thing for a new runner is to **start slower than you think you need to**. Most beginners quit because they do too much too soon and end up sore, exhausted or injured.

**1. Start with run–walk intervals**

Don't try to run continuously at first. A proven beginner approach:

- **Weeks 1–2:** warm up with a 5-minute brisk walk. Then alternate **1 minute of easy running with 2 minutes of walking**, 6–8 times. Cool down with a 5-minute walk.
- **Weeks 3–4:** 2 minutes running, 2 minutes walking.
- **Weeks 5–6:** 3–5 minutes running, 1–2 minutes walking.
- Keep stretching the running intervals until you can run 20–30 minutes without stopping. Many "couch to 5K" plans take about 8–9 weeks to get there.

**2. Run slowly, really slowly**

Your pace should be conversational: you should be able to speak in full sentences. If you can't, slow down or walk. Easy running builds your heart, lungs and legs safely, and it's what most experienced runners do most of the time.

**3. Three days a week, with rest days between**

Your muscles, tendons and bones adapt during recovery. Running every other day gives them time to strengthen. Walking, cycling or gentle yoga on rest days is fine.

**4. Basic gear**

- **Running shoes** that feel comfortable. A running store can help you find a fit; you don't need the most expensive pair.
- Comfortable clothes that don't chafe. That's all you need to begin.

**5. Listen to your body**

- Mild muscle soreness in the first weeks is normal.
- **Sharp pain, pain that gets worse while running, or pain that lasts more than a few days** is not. Rest, and see a professional if it continues.
- Increase your weekly running time by no more than about 10% per week.

**6. Make it a habit**

Schedule runs like appointments, track them in an app or notebook, and celebrate small wins, like your first 10 minutes without stopping.

**A note on health:** if you have heart or joint conditions, are pregnant, or have been inactive for a long time and have health concerns, check with your doctor before starting.""",
    ),
    (
        "advice",
        "How do I say no to extra work from my manager when I'm already overloaded?",
        """Saying no to a manager feels risky, but a well-framed "no" usually comes across as responsible, not uncooperative. The trick is to turn the conversation from **yes or no** into **what matters most**.

**1. Know your current load**

Before the conversation, write down what you're working on, with rough time estimates and deadlines. Concrete facts are much more persuasive than "I'm really busy."

**2. Don't answer on the spot if you don't need to**

"Let me look at my current deadlines and get back to you this afternoon" is a perfectly professional response, and it gives you time to think.

**3. Ask them to help prioritize**

Instead of refusing outright, show the trade-off and let your manager decide:

> "I'd like to help with this. Right now I'm on the Q3 report, due Friday, and the client onboarding, due next Wednesday. If I take this on, one of those would need to move. Which should I prioritize?"

This makes the cost of the extra work visible, respects their authority to set priorities, and shows you care about quality.

**4. Offer alternatives**

- "I can't take on all of it, but I could do the data analysis part."
- "I could start on this next Monday, once the report is done."
- "Priya has worked on something similar. She might be a good fit, or I could support her."

**5. Be direct when you have to be**

If your plate is genuinely full:

> "I want to be honest: I'm at capacity, and taking this on would put the quality of my current work at risk. I'd rather tell you now than miss a deadline later."

Calm and factual, with no over-apologizing or long justifications.

**6. If it keeps happening**

Chronic overload is a conversation for your next one-on-one, not just a series of individual refusals. Bring a list of your recurring responsibilities and ask how your manager sees your priorities and workload.

**Remember:** agreeing to everything and then delivering late or poorly harms your reputation far more than a thoughtful, early "not right now." """,
    ),
    (
        "how-to",
        "How do I change a flat tire on a car?",
        """Here's a step-by-step guide. Check your car's owner's manual too, since jack points and tools vary by model.

**Before you start: get safe**

1. **Pull over** somewhere flat and stable, well away from traffic. Avoid soft ground and slopes.
2. **Turn on your hazard lights** and apply the **parking brake**. Put an automatic in Park, or a manual in first gear or reverse.
3. If you have wheel wedges, or can find a large rock, place it behind the wheel diagonally opposite the flat.
4. Get out the **spare tire, jack and lug wrench** (usually under the trunk floor).

**Changing the tire**

5. **Remove the hubcap** if there is one.
6. **Loosen the lug nuts while the tire is still on the ground,** about half a turn each, counterclockwise. They can be tight; use your body weight on the wrench if needed. Don't remove them yet.
7. **Place the jack** at the correct jack point under the car's frame near the flat tire (your manual shows where). Jacking at the wrong spot can damage the car or let it slip.
8. **Raise the car** until the flat tire is about 15 cm (6 inches) off the ground. **Never put any part of your body under the car.**
9. **Remove the lug nuts** completely and keep them together, for example in the hubcap.
10. **Pull the flat tire** straight toward you and set it aside.
11. **Mount the spare** by lining up the holes with the wheel studs and pushing it on.
12. **Hand-tighten the lug nuts**, then snug them with the wrench.
13. **Lower the car** until the tire touches the ground, then **tighten the nuts fully in a star (criss-cross) pattern**, so the wheel seats evenly.
14. Lower the car completely and remove the jack.

**Afterward**

- Put the flat tire and the tools back in the car.
- **Check the spare's pressure** as soon as you can.
- If it's a compact "donut" spare, don't exceed about **80 km/h (50 mph)** and don't drive far on it. Get the flat repaired or replaced soon.
- Have the lug nuts checked with a torque wrench after driving a short distance.

If you're on a highway shoulder or feel unsafe at any point, stay in the car with your seatbelt on and call roadside assistance.""",
    ),
    (
        "how-to",
        "How do I make a basic sourdough starter from scratch?",
        """A sourdough starter is just flour and water fermented by the wild yeast and bacteria that live naturally on grain and in your kitchen. It takes about **7–10 days** to become strong enough for bread.

**What you need**

- Whole wheat or rye flour for the first few days (more wild microbes and nutrients), then all-purpose or bread flour
- Water, filtered or left out overnight if your tap water is heavily chlorinated
- A clean glass jar (around 1 liter), a loose lid or a cloth, and a kitchen scale if possible

**Day 1**

Mix **50 g whole wheat flour + 50 g water** in the jar until no dry flour remains. Cover loosely and leave at room temperature, ideally 22–26 °C (72–78 °F).

**Days 2–3**

You may see some bubbles, or nothing at all. Both are normal. Once a day, discard all but about 50 g of the mixture, then add **50 g flour + 50 g water** and stir.

Note: an early burst of activity on day 2 or 3, followed by a quiet period, is common. That first activity usually comes from bacteria that die off as the mixture becomes more acidic. Keep going.

**Days 4–7**

Keep feeding once a day (discard down to 50 g, add 50 g flour + 50 g water). You can switch to all-purpose flour or a mix. When you see regular bubbles, start feeding **twice a day**, about 12 hours apart.

**How you know it's ready**

- It reliably **doubles in size within 4–8 hours** after a feeding.
- It's full of bubbles and smells pleasantly tangy, like yogurt or mild vinegar.
- A spoonful dropped into water floats (a handy, if imperfect, test).

**Troubleshooting**

- **No activity after several days:** move it somewhere warmer and make sure you're using whole grain flour.
- **Gray liquid on top ("hooch"):** the starter is hungry. Pour it off or stir it in, then feed.
- **Pink, orange or fuzzy mold:** throw it out and start again with a clean jar.

**Ongoing care:** once it's established, you can keep it in the fridge and feed it once a week. Take it out and feed it once or twice before baking.""",
    ),
    (
        "how-to",
        "How do I set up a monthly budget for the first time?",
        """Setting up your first budget is mostly about **seeing where your money actually goes**, then deciding where you want it to go. Here's a simple process.

**Step 1: Find your monthly take-home income**

Use what actually lands in your bank account after taxes and deductions. If your income varies, use your lowest typical month so the budget still works in a slow month.

**Step 2: Track what you currently spend**

Go through the last 2–3 months of bank and credit card statements and sort your spending into categories:

- **Fixed essentials:** rent or mortgage, utilities, insurance, loan minimums, phone
- **Variable essentials:** groceries, fuel, transit, medicine
- **Non-essentials:** eating out, subscriptions, shopping, entertainment
- **Irregular costs:** car repairs, gifts, annual fees. Divide yearly costs by 12.

Most people are surprised by at least one category, often food delivery or subscriptions.

**Step 3: Choose a simple framework**

A popular starting point is the **50/30/20 rule**:

- **50%** needs
- **30%** wants
- **20%** savings and extra debt payments

Treat it as a guide, not a law. In high-cost cities, needs often exceed 50%, which is fine as long as the plan balances.

**Step 4: Assign every amount**

Write out your plan for the coming month, category by category, so that income minus all planned spending and saving comes to zero. Make savings a category you pay first, ideally by **automatic transfer on payday**.

**Step 5: Build a small emergency fund first**

Aim for a starter cushion of about one month of essential expenses, then work toward 3–6 months. This stops a surprise bill from ending up on a credit card.

**Step 6: Track and adjust**

Use a spreadsheet, a budgeting app, or even a notebook. Check in weekly for 10 minutes. At the end of the month, compare plan against reality and adjust. Your first few budgets won't be accurate, and that's normal.

**Tips that make it stick**

- Budget a little "fun money" so the plan doesn't feel like punishment.
- If you overspend in one category, move money from another rather than abandoning the budget.
- Cancel one unused subscription today. Quick wins build momentum.""",
    ),
    (
        "how-to",
        "How do I write a good README for my open-source project?",
        """A good README answers, in order, the questions a newcomer has: **What is this? Is it for me? How do I try it? How do I get help or contribute?**

**1. Name and one-line description**

Start with the project name and a single sentence saying what it does and for whom.

> **tidyframe**: fast, typed data cleaning for pandas DataFrames.

**2. A quick example, near the top**

Show, don't tell. A short code sample or screenshot of the tool in action convinces people faster than paragraphs of description.

```python
from tidyframe import clean
df = clean(df, drop_empty=True, normalize_columns=True)
```

**3. Installation**

Give the exact command for copy and paste, plus requirements such as the language version and operating systems.

```bash
pip install tidyframe   # Python 3.10+
```

**4. Usage**

Cover the most common tasks with short examples. Link to full documentation for the rest, and keep the README focused rather than turning it into a manual.

**5. Features and limitations**

A short bullet list of what it does well, and honestly, what it doesn't do. This saves users time and prevents frustrated issues.

**6. Configuration and options** (if relevant)

A compact table of important settings and their defaults.

**7. Contributing**

How to set up a development environment, run the tests, and submit changes. Link to a CONTRIBUTING.md for details, and mention a code of conduct if you have one.

**8. Support and status**

Where to ask questions (issues, discussions, chat), and whether the project is actively maintained, experimental, or stable.

**9. License**

State it clearly, for example "MIT License, see LICENSE." Without a license, others legally can't use your code.

**Good habits**

- **Test your own instructions** in a fresh environment. Broken install steps are the most common README failure.
- Add **badges** (build status, version, license) sparingly; a few are informative, a wall of them is noise.
- Use headings so readers can skim, and keep paragraphs short.
- Update the README whenever behavior changes. An outdated README is worse than a short one.""",
    ),
    (
        "how-to",
        "How do I get rid of fruit flies in my kitchen?",
        """Fruit flies breed quickly (a female can lay hundreds of eggs), so the fix has two parts: **remove where they breed** and **trap the adults**.

**1. Find and remove the breeding sources**

Fruit flies lay eggs on moist, fermenting organic matter. Check:

- **Ripe or overripe fruit and vegetables**, especially bananas, tomatoes, onions and potatoes. Look inside bags and at the bottom of baskets.
- **Trash and compost bins**: empty them, then wash the bins and lids.
- **Recycling**: rinse bottles and cans, particularly wine, beer, juice and soda.
- **Sink drains and garbage disposals**: a film of organic gunk in drains is a classic hidden breeding site.
- Damp sponges, mops and dishcloths, pet food bowls, and spills under appliances.

**2. Clean the drains**

Pour boiling water down the drain (if your pipes can handle it), then scrub inside the drain with a brush if you can reach. A bacterial or enzyme drain cleaner helps break down residue. To check whether a drain is the source, tape a clear plastic bag loosely over it overnight; flies in the bag in the morning confirm it.

**3. Trap the adults**

A simple, effective homemade trap:

- Pour a little **apple cider vinegar** into a jar or small bowl.
- Add **one drop of dish soap**. It breaks the surface tension, so flies that land sink.
- Cover it with plastic wrap, poke a few small holes, and place it near where you see the flies.

A small amount of wine or a piece of overripe banana also works as bait. Empty and refresh traps every few days.

**4. Keep them from coming back**

- Store ripe produce in the fridge.
- Take out trash and compost regularly.
- Wipe counters and rinse dishes promptly.
- Check new produce as you bring it home; flies often arrive as eggs on fruit.

**How long it takes:** once breeding sites are gone, the adult population usually collapses within about a week, since adults live only a few weeks. If flies persist, there's still a hidden source, so keep looking.""",
    ),
    (
        "analysis",
        "What are the pros and cons of remote work for companies?",
        """Remote work brings real advantages and real challenges for companies. Which side wins depends heavily on the kind of work, the company's culture, and how deliberately remote work is managed.

**Advantages**

- **Access to a wider talent pool.** Hiring isn't limited to people within commuting distance, which helps fill specialized roles and widens diversity.
- **Lower real estate costs.** Smaller offices or none at all can save significant money, especially in expensive cities.
- **Retention and attraction.** Many employees value flexibility highly; offering it can reduce turnover and act as a benefit that costs little.
- **Productivity for focused work.** Fewer interruptions and no commute can help with individual, deep-concentration tasks, though results vary by role and person.
- **Resilience.** Distributed teams can keep operating through local disruptions such as storms, transit strikes or outbreaks.

**Disadvantages**

- **Harder collaboration and innovation.** Spontaneous conversations, quick questions and whiteboard sessions happen less. Some research suggests remote teams communicate in more siloed ways.
- **Onboarding and mentoring suffer.** Junior staff learn a lot by watching and overhearing experienced colleagues; this is harder to recreate online.
- **Culture and belonging.** Maintaining shared values and social ties takes deliberate effort, and isolation can affect engagement.
- **Management challenges.** Managers must judge performance by outcomes rather than visibility, which requires clearer goals and some retraining.
- **Security and compliance.** Home networks and personal devices increase the risk of data breaches, and employees in other jurisdictions can complicate tax and employment law.
- **Time zones.** Spread-out teams have fewer overlapping hours for real-time work.

**What tips the balance**

- **Nature of the work:** individual, well-defined tasks suit remote work better than highly interdependent or hands-on work.
- **Intentional practices:** good documentation, clear goals, regular check-ins, and periodic in-person gatherings reduce most of the downsides.
- **Hybrid models:** many companies settle on a mix, such as in-office days for collaboration and remote days for focus, trying to capture the benefits of both.

**Bottom line:** remote work isn't inherently better or worse. It works well when a company redesigns how it communicates and manages, and poorly when office habits are simply moved onto video calls.""",
    ),
    (
        "analysis",
        "Compare electric cars and gasoline cars in terms of total cost of ownership.",
        """Total cost of ownership (TCO) counts everything you pay over the years you own a car, not just the sticker price. Electric vehicles (EVs) usually cost more up front but less to run. Whether they come out ahead depends on your driving, local energy prices and incentives.

**Purchase price**

- EVs generally cost more to buy than comparable gasoline cars, though the gap has been narrowing as battery costs fall.
- Government incentives, tax credits and rebates can cover part or all of the difference, depending on where you live and the model.

**Fuel vs. electricity**

- This is usually the EV's biggest advantage. Charging at home typically costs much less per kilometer than gasoline, often a third to a half, depending on local electricity and fuel prices.
- Relying mainly on fast public chargers narrows that advantage, since fast charging is priced much higher than home electricity.

**Maintenance and repairs**

- EVs have far fewer moving parts: no oil changes, spark plugs, timing belts or exhaust systems. Regenerative braking also reduces brake wear.
- Studies commonly find EV maintenance costs roughly a third to a half lower over the life of the vehicle.
- The main long-term uncertainty is the battery. Modern batteries generally last many years and usually carry long warranties (often 8 years), but an out-of-warranty replacement is expensive.

**Insurance**

- EVs can be more expensive to insure, partly because of higher repair costs for specialized parts.

**Depreciation and resale**

- EV resale values have historically been less predictable, influenced by fast-improving technology and changing incentives. Gasoline car depreciation is better understood.

**Other costs**

- A home charger installation adds an upfront cost for many EV owners.
- Some regions charge EV registration fees to make up for lost fuel taxes.

**When each tends to win**

- **EVs** tend to win on TCO for people who drive a lot, can charge at home, live where electricity is cheap relative to gasoline, and keep their cars for many years.
- **Gasoline cars** may still win for low-mileage drivers, those who depend on fast charging, or where incentives are small and electricity is expensive.

**Tip:** run the numbers for your own situation with an online TCO calculator, using your annual distance, local energy prices and the specific models you are considering.""",
    ),
    (
        "analysis",
        "Why did the Roman Empire fall? Give a balanced overview of the main explanations.",
        """Historians don't agree on a single cause. Most now see the fall of the **Western** Roman Empire (traditionally dated to 476 CE) as the result of several pressures interacting over more than a century. The **Eastern** Empire, based in Constantinople, survived until 1453, which is itself an important clue.

**Main explanations**

**1. Military pressure and migration**

From the late 300s, groups such as the Goths, Vandals and Huns pushed into imperial territory. The Western army increasingly relied on Germanic soldiers and commanders whose loyalty to Rome could be limited. Major defeats, such as Adrianople (378 CE), and the sack of Rome (410 CE) showed the West's weakness.

**2. Political instability**

The third century saw dozens of emperors, many murdered or overthrown by the army. Civil wars wasted resources and left frontiers exposed. In the fifth century, real power in the West often lay with military strongmen rather than emperors.

**3. Economic strain**

Heavy military costs, debasement of the currency, inflation and high taxes weakened the economy. The loss of rich provinces, especially North Africa to the Vandals in 439, cut the West's tax base and grain supply, creating a downward spiral: less revenue, weaker armies, more lost land.

**4. Division of the empire**

Splitting the empire administratively into East and West left the West with the longer, more exposed frontier and the poorer economy. The wealthier East could buy off or redirect invaders, sometimes toward the West.

**5. Older or disputed explanations**

- **Moral decay** (emphasized by Edward Gibbon in the 18th century) is now widely seen as too vague and moralizing.
- **Christianity** weakening civic virtue, another of Gibbon's ideas, is mostly rejected, since the Christian Eastern Empire endured for another thousand years.
- **Environmental factors** such as plagues and climate shifts get growing attention, but scholars debate how much they contributed.

**"Fall" or "transformation"?**

Some historians argue that "fall" is misleading. In this view, Roman institutions, law, language and Christianity continued under the new kingdoms, and the period is better described as a transformation. Others reply that the collapse in living standards, trade and urban life in the West was very real.

**Balanced takeaway:** external pressure exploited internal weaknesses (political, fiscal and military) that had built up over generations, and the West collapsed where the richer and more defensible East did not.""",
    ),
    (
        "analysis",
        "Is it better to rent or buy a home? What factors should I consider?",
        """There's no universal answer. Whether renting or buying is better depends on **how long you'll stay, local prices, your finances and your priorities**. The common saying that "renting is throwing money away" is an oversimplification, because buying has its own unrecoverable costs.

**Key factors**

**1. How long you plan to stay**

Buying and selling involve large one-time costs: closing costs, taxes and fees, agent commissions and moving. Spreading them over more years makes buying more worthwhile. A common rule of thumb is that buying rarely makes sense if you'll stay fewer than about **5 years**.

**2. Compare unrecoverable costs, not rent vs. mortgage**

- **Renting:** rent (plus renter's insurance).
- **Owning:** mortgage interest, property taxes, insurance, maintenance (often estimated at about 1% of the home's value per year), HOA fees, and the **opportunity cost** of your down payment, meaning the returns that money could earn if invested.

The principal part of a mortgage payment isn't lost, since it builds equity, but interest, taxes and maintenance are.

**3. The price-to-rent ratio in your area**

Divide a home's price by a year's rent for a similar place. Very high ratios (for example above 20) tend to favor renting; lower ratios tend to favor buying. Online rent-vs-buy calculators do this comparison in more detail.

**4. Your financial readiness**

- A down payment that doesn't empty your emergency fund
- A stable income and a good credit score (for a better interest rate)
- Room in your budget for surprise repairs, such as a roof or a water heater

**5. Interest rates**

Higher mortgage rates raise the cost of owning considerably, while rent isn't directly affected.

**Non-financial considerations**

- **Buying:** stability, control (renovate, own pets, no landlord), and a form of forced savings.
- **Renting:** flexibility to move for a job or relationship, no maintenance responsibility, and less financial risk if local prices fall.

**How to decide:** estimate how long you'll stay, run a rent-vs-buy calculator with local numbers, and be honest about whether you value flexibility or stability more. Either can be the right financial choice.""",
    ),
    (
        "creative",
        "Write a short poem about autumn in a city.",
        """**October, Downtown**

The maples on Fifth Street are burning slow,
a quiet fire no one thinks to fight;
their leaves go skittering where taxis go
and gather in the gutters, gold and bright.

The coffee carts wear steam like winter coats.
A busker plays a song that's mostly minor.
The wind comes off the river, pulling notes
from fire escapes and every corner diner.

At five o'clock the light goes amber-thin,
the office windows catch it, hold it, blaze:
a thousand glass-lit lanterns leaning in
to warm the last few hours of shorter days.

And walking home, I crunch the fallen year
beneath my shoes, and find I'm glad I'm here.

---

*A few notes on the choices, in case you'd like to adapt it:*

- **Form:** three quatrains and a closing couplet, loosely following a Shakespearean sonnet's rhyme scheme (ABAB CDCD EFEF GG) to give it a traditional, seasonal feel.
- **Imagery:** it contrasts natural autumn (maples, wind, falling leaves) with city details (taxis, coffee carts, fire escapes, office windows), since autumn in a city happens in the spaces between buildings.
- **Arc:** it moves from morning scenes to evening light to the walk home, ending on a personal, warmer note.

If you'd like, I can write a version in free verse, make it more melancholy, or set it in a specific city.""",
    ),
    (
        "creative",
        "Write the opening paragraph of a mystery novel set in a lighthouse.",
        """The lamp at Gull Point had not failed in one hundred and twelve years, which is why, on the night of the third of November, the fishing boats coming home around the headland slowed, and then stopped, and sat rocking in the black water as though the sea itself had lost its nerve. Mara Quell saw it from her kitchen window across the bay: not a flicker, not the long, patient sweep she had counted herself to sleep by since childhood, but darkness, complete and deliberate, where the light should have been. She told herself it was the generator. She told herself old Tobias had fallen asleep over his crossword again. But Tobias Venn had kept that light for forty years without missing a single turn, and when Mara finally climbed the hundred and eight iron steps at dawn, with the harbormaster wheezing behind her, the keeper's chair was empty, his tea was still faintly warm, and the great lens had been carefully, precisely turned to face the land.

---

**Techniques used, if helpful:**

- **An unbroken tradition broken:** a century of reliability makes the failure feel significant right away.
- **A vivid ripple effect:** the boats stopping shows the stakes before any explanation.
- **Grounded point of view:** Mara's long familiarity with the light makes her a natural investigator.
- **Escalating clues:** empty chair, warm tea, and finally a deliberate, unsettling detail, the lens turned toward the land, which raises the central question: who would want to shine the light *inland*, and why?""",
    ),
    (
        "creative",
        "Give me five creative prompts for a children's story about friendship.",
        """Here are five friendship story prompts for children of roughly 4–9, each with a hook, a gentle conflict and the lesson it can carry.

**1. The Cloud Who Couldn't Rain**
A small cloud named Puff can't make rain like the other clouds and feels useless, until a thirsty little flower on a hill tells Puff that its shade is what keeps her from wilting in the afternoon sun.
*Theme:* Friends value you for who you are, not what you can do.

**2. Two Halves of a Map**
Tomás finds half of a treasure map in a library book. The other half belongs to Ivy, the new girl he hasn't been very welcoming to. To find the treasure, they have to work together, and the "treasure" turns out to be something they can only share.
*Theme:* Giving someone a second chance; cooperation.

**3. The Robot Who Collected Laughs**
A tidy little robot is programmed to collect interesting objects, but it discovers that the best thing it has ever "collected" is the sound of its friend's laugh. It tries to bottle it, and learns laughter can only be shared, not kept.
*Theme:* Friendship is about moments together, not possessions.

**4. Bear Is Too Big for the Tree House**
Bear helped build the tree house, but after a growth spurt he no longer fits through the door. His friends Squirrel, Owl and Rabbit must decide whether to let him sit alone on the ground or rebuild their special place so everyone fits.
*Theme:* Including friends as they change; friendship means adapting.

**5. The Lighthouse and the Little Boat**
A lonely lighthouse guides every ship but never gets to talk to any of them, until a small rowboat starts visiting each evening to tell stories about the places it has seen. When a storm comes, the lighthouse must guide its friend safely home.
*Theme:* Friends look out for each other; kindness flows both ways.

**Tips for writing them**

- Keep the conflict small and emotionally clear; feeling left out or misunderstood resonates with children.
- Let the characters solve the problem themselves, rather than an adult doing it.
- Repetition and a satisfying refrain, such as the rowboat saying "Tell you tomorrow!", work beautifully for read-aloud stories.""",
    ),
    (
        "creative",
        "Write a six-word story about starting over.",
        """Here are a few options, each taking "starting over" in a different direction:

1. **"Sold the house. Kept the garden."**
   Letting go of what's big while carrying forward what you nurtured.

2. **"New city. Same stars. Different wishes."**
   The world stays constant; it's you who changes.

3. **"Deleted his number. Remembered mine."**
   Ending a relationship, and rediscovering yourself.

4. **"First day sober. Sunrise looked different."**
   Recovery, and seeing the world fresh.

5. **"Burned the manuscript. Began chapter one."**
   Creative failure turned into a new beginning.

**My pick:** *"Sold the house. Kept the garden."* It suggests a whole story of loss, choice and hope in six words, without stating any emotion directly.

**Why six-word stories work:** like the famous example often attributed to Hemingway ("For sale: baby shoes, never worn."), they rely on implication. The best ones hint at what happened before and after, and let the reader fill in the rest. Concrete objects (a house, a garden, a manuscript) usually carry more emotional weight than abstract words like "hope" or "change." """,
    ),
    (
        "analysis",
        "A small bakery's sales dropped 15% this quarter compared with last quarter. What questions would you ask to figure out why?",
        """A 15% drop can come from very different causes, so the goal is to narrow things down before acting. I'd work through the questions below roughly in this order, starting with the cheapest to answer.

**1. Is the drop real, and is it unusual?**

- How do sales compare with the **same quarter last year**? Many bakeries are seasonal: holiday quarters are strong, and late summer is often slow.
- Did anything change in how sales are recorded, such as a new point-of-sale system, a missing week of data, or a change in how delivery orders are counted?

**2. Where exactly did sales fall?**

Break the 15% down:

- **Fewer customers or smaller purchases?** Compare the number of transactions with the average spend per transaction. Fewer visits points to traffic or competition; smaller baskets point to pricing or product mix.
- **Which products?** A fall concentrated in one category (say, custom cakes) tells a different story from an even fall everywhere.
- **Which days and times?** A drop only on weekday mornings might point to changed commuting patterns or a nearby office closing.
- **Which channel?** Walk-in, pre-orders, wholesale to cafés, or delivery apps.

**3. What changed on our side?**

- Prices raised, products discontinued, recipes or suppliers changed?
- Opening hours shortened, staff turnover, longer waits, more sold-out items?
- Less marketing, fewer social media posts, or lower ratings in recent reviews?

**4. What changed outside?**

- A new competitor nearby, or a supermarket that started a bakery section?
- Roadworks, parking changes, or a nearby business that closed and reduced foot traffic?
- Broader pressure on customers' budgets, for example rising living costs?

**5. What are customers telling us?**

- What do regulars say when asked directly? Have any stopped coming?
- What do recent online reviews mention?

**Turning questions into action**

Start with the data you already have (sales by product, day, channel, transactions and average spend), since it usually points to one or two likely causes within an hour. Then test the leading hypothesis cheaply: for example, if weekday mornings fell after a price rise on coffee and pastry deals, try restoring the morning combo for a month and measure the change.""",
    ),
]
