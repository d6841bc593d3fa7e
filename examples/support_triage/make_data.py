"""Write the support_triage example data for "Tallyo", a fictional invoicing app for small businesses.

    data/tickets.csv  200 support tickets: id, subject, body, category, priority
    data/tickets_hf/  a Hugging Face DatasetDict (split "train"): 200 FAQ pairs, question, answer

Templates, word lists and a fixed seed; byte-identical on every run (the Arrow file for a given
pyarrow/datasets version; the dataset's fingerprint is fixed so state.json is stable too). Usage:

    python examples/support_triage/make_data.py [OUTPUT_DIR]    # default: data/ beside this file
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

import pyarrow as pa

SEED = 4242
N_TICKETS = 200
N_FAQ = 200
FAQ_FINGERPRINT = "tallyo-faq-v1"  # datasets would otherwise hash the table; fixed keeps state.json stable

CUSTOMERS = [
    "Ana Ruiz",
    "Ben Okafor",
    "Chen Wei",
    "Dana Kowalski",
    "Eli Haddad",
    "Fatima Noor",
    "Greg Olsen",
    "Hiro Tanaka",
    "Isla Murphy",
    "Jamal Reed",
    "Kim Nguyen",
    "Lars Berg",
    "Maria Rossi",
    "Nikhil Rao",
    "Olga Petrova",
    "Paul Dubois",
    "Rosa Lima",
    "Tom Baker",
]
COMPANIES = [
    "Blue Fern Design",
    "Harbor Plumbing",
    "Oak & Ivy Bakery",
    "Nguyen Consulting",
    "Summit Bikes",
    "Little Lamb Daycare",
    "Redline Auto",
    "Pixel Forge Studio",
    "Green Thumb Landscaping",
    "Cedar Dental",
]
PLANS = ["Starter", "Pro", "Business"]
BROWSERS = [
    "Chrome 126 on Windows 11",
    "Safari 17 on macOS",
    "Firefox 127 on Ubuntu",
    "the iOS app (v4.2.1)",
    "the Android app (v4.1.9)",
    "Edge on Windows 10",
]
GREET = ["Hi,", "Hello,", "Hi Tallyo team,", "Hello support,", "Good morning,", ""]
SIGN = ["Thanks,", "Thank you,", "Regards,", "Cheers,", "Best,"]

# (subject, body, priority) per category. Bodies may hold quotes, commas and line breaks on purpose:
# they exercise real CSV quoting in every reader.
TICKETS = {
    "billing": [
        (
            "Charged twice this month",
            "My card was charged twice for the {plan} plan on {date}, ${amt} each time. "
            "Please refund the duplicate charge.",
            "high",
        ),
        (
            "Refund request",
            "I downgraded from {plan} but was still billed ${amt}. Can I get a refund for the difference?",
            "medium",
        ),
        (
            "Invoice for our accountant",
            "Where can I download a PDF receipt for our Tallyo subscription? "
            "Our accountant needs it, with our VAT number, by the end of the month.",
            "low",
        ),
        (
            "Card declined, account locked?",
            'We got an email saying "payment failed" and now I can\'t create invoices.\n'
            "The card is fine, I just used it elsewhere. Please help, we need to bill a client today.",
            "high",
        ),
        (
            "Change billing email",
            "Please send future receipts to billing@{domain} instead of my personal address.",
            "low",
        ),
        (
            "Annual vs monthly pricing",
            "If I switch the {plan} plan to annual billing, do I get the discount right away, or at the next renewal?",
            "low",
        ),
        (
            "Unexpected price increase",
            "Our renewal went from ${amt} to ${amt2} without notice.\n"
            "Was there an announcement? We're a small shop, so this matters.",
            "medium",
        ),
        (
            "Tax missing on receipt",
            "The receipt for order #{num} doesn't show sales tax, which our auditor flagged.",
            "medium",
        ),
    ],
    "bug": [
        (
            "App crashes when saving invoice",
            'Every time I click "Save" on invoice #{num}, {browser} crashes. I\'ve lost the draft three times now.',
            "high",
        ),
        (
            "PDF shows wrong currency",
            "Invoices for our EU clients show $ in the PDF, even though the client's currency "
            "is set to EUR. The totals are right, only the symbol is wrong.",
            "medium",
        ),
        (
            "Payments not syncing",
            "Stripe payments from yesterday are not showing up in Tallyo.\n"
            'Error in the sync log: "E1042: sync failed, token expired".\nWe can\'t see who paid.',
            "high",
        ),
        (
            "Typo on the reminders page",
            'Small thing: the reminders page says "Remider sent" instead of "Reminder sent".',
            "low",
        ),
        (
            "Report totals don't match",
            "The Profit & Loss report for Q{q} shows ${amt}, but adding the invoices by hand "
            "gives ${amt2}. Which one is right?",
            "high",
        ),
        (
            "Date picker stuck",
            "In {browser} the due-date picker won't close after I choose a date, so I have to reload the page.",
            "medium",
        ),
        (
            "Duplicate client after import",
            'I imported clients.csv and now "{company}" appears twice, with the same email.',
            "medium",
        ),
        ("Logo blurry on invoices", "Our logo looks blurry on printed invoices; it's a 1200x400 PNG.", "low"),
    ],
    "account": [
        (
            "Can't log in",
            'I reset my password twice but still get "Invalid credentials".\n'
            "I'm locked out and have invoices due today.",
            "high",
        ),
        ("Add a team member", "How do I invite our bookkeeper, {customer2}, with access to reports only?", "low"),
        (
            "Two-factor codes not arriving",
            "The 2FA text messages stopped arriving on my phone, so I can't sign in from my new laptop.",
            "high",
        ),
        (
            "Delete my account",
            "We closed the business. Please delete our account and all data, and confirm once it's done.",
            "medium",
        ),
        (
            "Change company name",
            'We rebranded from "{company}" to "{company2}". How do I change the name on our account and on invoices?',
            "low",
        ),
        (
            "Transfer ownership",
            "I'm leaving the company; please transfer the owner role to {customer2}, who is already an admin.",
            "medium",
        ),
        (
            "Suspicious login email",
            'I got a "new sign-in from Lisbon, Portugal" email, but I\'m in {city}.\n'
            "I didn't log in. Has my account been compromised?",
            "high",
        ),
        ("Update email address", "Please change my login email to {first}@{domain}; the old one is going away.", "low"),
    ],
    "feature_request": [
        ("Dark mode, please", "Would love a dark mode for the web app; I do my invoicing late at night.", "low"),
        (
            "Recurring invoices every 2 weeks",
            "We bill some clients bi-weekly. Recurring invoices only offer weekly "
            'or monthly, could you add "every 2 weeks"?',
            "medium",
        ),
        (
            "Export to QuickBooks",
            "Is a QuickBooks export on the roadmap? Our accountant asks for it every quarter.",
            "medium",
        ),
        (
            "Custom fields on invoices",
            'We need a "PO number" field on invoices, several of our clients require it.',
            "medium",
        ),
        ("Bulk edit due dates", "It would save us hours to change the due date of many invoices at once.", "low"),
        (
            "Multiple languages on invoices",
            "Some clients are in Quebec; could invoices be printed in French, with the same layout?",
            "low",
        ),
        (
            "API webhooks for payments",
            "Please add a webhook when an invoice is paid, so our CRM can update itself.\n"
            "Polling the API every 5 minutes is wasteful.",
            "medium",
        ),
        (
            "Split payments",
            "Clients sometimes pay half by card, half by bank transfer. Could one invoice record two payment methods?",
            "low",
        ),
    ],
}
CITIES = ["Denver", "Leeds", "Toronto", "Austin", "Dublin", "Melbourne", "Portland", "Cape Town"]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def _fill(rng: random.Random, text: str) -> str:
    customer2 = rng.choice(CUSTOMERS)
    company, company2 = rng.sample(COMPANIES, 2)
    amt = rng.choice([12, 19, 29, 39, 49, 79, 99, 149])
    return text.format(
        plan=rng.choice(PLANS),
        date=f"{rng.choice(MONTHS)} {rng.randint(1, 28)}",
        amt=f"{amt}.00",
        amt2=f"{amt + rng.choice([5, 10, 20, 30])}.00",
        num=rng.randint(1000, 9999),
        browser=rng.choice(BROWSERS),
        company=company,
        company2=company2,
        customer2=customer2,
        q=rng.randint(1, 4),
        city=rng.choice(CITIES),
        first=customer2.split()[0].lower(),
        domain=company.lower().replace(" & ", "").replace(" ", "") + ".com",
    )


def tickets(rng: random.Random) -> list[dict]:
    cats = [c for c in TICKETS for _ in range(N_TICKETS // len(TICKETS))]
    rng.shuffle(cats)
    out = []
    for i, cat in enumerate(cats, 1):
        subject, body, priority = rng.choice(TICKETS[cat])
        name = rng.choice(CUSTOMERS)
        parts = [rng.choice(GREET), _fill(rng, body), f"{rng.choice(SIGN)}\n{name}, {rng.choice(COMPANIES)}"]
        sep = "\n\n" if rng.random() < 0.6 else "\n"
        out.append(
            {
                "id": f"T-{i:04d}",
                "subject": subject if rng.random() < 0.7 else f"Re: {subject}",
                "body": sep.join(p for p in parts if p),
                "category": cat,
                "priority": priority,
            }
        )
    return out


# ---------------------------------------------------------------- FAQ
# (singular, plural, where it lives in the app, actions it supports)
ENTITIES = [
    ("invoice", "invoices", "Sales > Invoices", "create edit delete restore export import duplicate pdf email"),
    ("estimate", "estimates", "Sales > Estimates", "create edit delete restore export duplicate pdf email"),
    ("credit note", "credit notes", "Sales > Credit notes", "create edit delete export pdf email"),
    ("recurring invoice", "recurring invoices", "Sales > Recurring", "create edit delete pause export"),
    ("client", "clients", "Contacts > Clients", "create edit delete restore export import merge"),
    ("vendor", "vendors", "Contacts > Vendors", "create edit delete export import merge"),
    ("expense", "expenses", "Purchases > Expenses", "create edit delete restore export import attach"),
    ("bill", "bills", "Purchases > Bills", "create edit delete export attach"),
    ("product", "products", "Items > Products", "create edit delete export import"),
    ("tax rate", "tax rates", "Settings > Taxes", "create edit delete"),
    ("project", "projects", "Time > Projects", "create edit delete export pause"),
    ("time entry", "time entries", "Time > Timesheet", "create edit delete export"),
    ("payment", "payments", "Sales > Payments", "edit delete export pdf email"),
    ("report", "reports", "Reports", "export pdf email"),
]
Q_FORMS = [
    "How do I {verb}?",
    "How can I {verb}?",
    "Is it possible to {verb}?",
    "Can I {verb} in Tallyo?",
    "Where do I go to {verb}?",
]
ACTIONS = {
    "create": ("create a new {s}", 'Open {menu} and click "New {s}". Fill in the details and click Save.'),
    "edit": (
        "edit an existing {s}",
        "Open {menu}, click the {s} you want to change, then click Edit. Changes are saved when you click Save.",
    ),
    "delete": (
        "delete {a} {s}",
        "Open {menu}, select the {s}, and choose More > Delete. Deleted {p} stay in the Trash for 30 days.",
    ),
    "restore": (
        "restore a deleted {s}",
        "Go to Settings > Trash, find the {s}, and click Restore. Items are kept in the Trash for 30 days.",
    ),
    "export": (
        "export my {p} to CSV",
        "Open {menu}, click Export and choose CSV. The file covers the filters you have applied.",
    ),
    "import": (
        "import {p} from a spreadsheet",
        "Open {menu} and click Import. Upload a CSV file, match its columns to Tallyo's fields, then confirm.",
    ),
    "duplicate": (
        "copy an existing {s}",
        "Open the {s} in {menu} and choose More > Duplicate. The copy opens as a draft.",
    ),
    "pdf": ("download {a} {s} as a PDF", "Open the {s} in {menu} and click Download PDF."),
    "email": (
        "email {a} {s} to someone",
        "Open the {s} in {menu}, click Send, check the recipient and message, then click Send again.",
    ),
    "pause": ("pause {a} {s}", "Open the {s} in {menu} and click Pause. Click Resume to start it again."),
    "merge": (
        "merge two duplicate {p}",
        "Open {menu}, tick both {p}, and choose More > Merge. History from both is kept on the merged record.",
    ),
    "attach": (
        "attach a receipt to {a} {s}",
        "Open the {s} in {menu} and drag the file onto the Attachments box. "
        "PDF, JPG and PNG files up to 10 MB are accepted.",
    ),
}
POLICY = [
    ("Which plans does Tallyo offer?", "Three: Starter, Pro and Business. Each can be billed monthly or yearly."),
    ("Is there a free trial?", "Yes, every plan has a 14-day free trial, and no card is needed to start it."),
    (
        "How much do I save with yearly billing?",
        "Yearly billing costs the same as 10 months, so you get 2 months free.",
    ),
    (
        "Can I get a refund?",
        "Yearly plans can be refunded in full within 30 days of payment. Monthly plans are not "
        "refunded, but you can cancel at any time.",
    ),
    (
        "How do I cancel my subscription?",
        "Go to Settings > Billing and click Cancel subscription. Your data stays "
        "available until the end of the paid period.",
    ),
    (
        "Which payment methods do you accept for the subscription?",
        "Visa, Mastercard, American Express and, on yearly Business plans, bank transfer.",
    ),
    (
        "Where can I find my Tallyo receipts?",
        "Go to Settings > Billing > Receipts; each one can be downloaded as a PDF.",
    ),
    (
        "How do I add my VAT number to receipts?",
        "Go to Settings > Billing, enter the VAT number under Company details "
        "and click Save. It appears on all later receipts.",
    ),
    (
        "How do I reset my password?",
        'Click "Forgot password" on the sign-in page and follow the link we email you. '
        "The link expires after one hour.",
    ),
    (
        "How do I turn on two-factor authentication?",
        "Go to Settings > Security, click Enable 2FA and scan the QR code with an authenticator app.",
    ),
    (
        "What if I lose my 2FA device?",
        "Sign in with one of the backup codes you saved when enabling 2FA, or contact "
        "support from your account email to verify your identity.",
    ),
    (
        "How do I invite a team member?",
        "Go to Settings > Team, click Invite, enter their email and pick a role: Admin, Staff or Accountant.",
    ),
    (
        "What can the Accountant role see?",
        "Accountants can view and export reports, invoices and expenses, but cannot change settings or send invoices.",
    ),
    ("How many users can I add?", "Starter includes 1 user, Pro includes 5 and Business includes 20."),
    (
        "How do I change the account owner?",
        "The current owner goes to Settings > Team, opens an Admin's profile and clicks Make owner.",
    ),
    (
        "How do I delete my account?",
        "The account owner goes to Settings > Account and clicks Delete account. All data is erased within 30 days.",
    ),
    (
        "Can I change my company name?",
        "Yes. Go to Settings > Company, edit the name and click Save. New invoices use "
        "the new name; sent ones do not change.",
    ),
    (
        "How do I add my logo to invoices?",
        "Go to Settings > Branding and upload a PNG or JPG logo. A width of at least 600 pixels prints sharply.",
    ),
    (
        "Can clients pay invoices online?",
        "Yes. Connect Stripe or PayPal in Settings > Payments and a Pay now button appears on every emailed invoice.",
    ),
    (
        "Why is a Stripe payment missing?",
        "Check Settings > Payments > Sync log. If the connection expired, click "
        "Reconnect Stripe; missed payments are fetched again automatically.",
    ),
    (
        "Which currencies are supported?",
        "Invoices can be issued in over 130 currencies; set the currency per client in Contacts > Clients.",
    ),
    (
        "Does Tallyo send payment reminders?",
        "Yes. Turn them on in Settings > Reminders and choose how many days before and after the due date they go out.",
    ),
    (
        "Can I add a PO number to an invoice?",
        "Yes. Go to Settings > Invoices > Custom fields, add a field named "
        '"PO number", and it appears on every new invoice.',
    ),
    ("Is there a mobile app?", "Yes, Tallyo has apps for iOS and Android; they sync with the web app in real time."),
    (
        "Does Tallyo work offline?",
        "The mobile apps let you draft invoices and expenses offline and sync them when "
        "you are back online. The web app needs a connection.",
    ),
    ("Is my data backed up?", "Yes. Data is backed up every night and kept for 35 days, in two separate regions."),
    ("Where is my data stored?", "In data centres in the EU or the US; you choose the region when you sign up."),
    (
        "Does Tallyo have an API?",
        "Yes. Create an API key in Settings > Developers; the REST API documentation is linked from the same page.",
    ),
    (
        "Can Tallyo notify my system when an invoice is paid?",
        "Yes. Add a webhook URL in Settings > Developers > Webhooks and select the invoice.paid event.",
    ),
    (
        "Can I print invoices in another language?",
        "Yes. Set the client's language in Contacts > Clients; invoices to "
        "that client are printed in English, French, German, Spanish or Portuguese.",
    ),
    (
        "How do I contact support?",
        "Email support@tallyo.example or use the chat button in the app, Monday to Friday, 8:00 to 18:00 UTC.",
    ),
    (
        "Can I record a partial payment?",
        "Yes. Open the invoice, click Record payment and enter the amount received; "
        "the invoice stays open until it is fully paid.",
    ),
    (
        "Can I set up a recurring invoice every two weeks?",
        "Yes. When creating a recurring invoice, choose Custom under Frequency and set it to every 2 weeks.",
    ),
    (
        "How do I connect my bank account?",
        "Go to Banking > Accounts, click Connect bank and sign in to your bank through the secure window.",
    ),
    (
        "How is sales tax calculated?",
        "Tallyo applies the tax rates you set in Settings > Taxes to each line item, "
        "then adds them up on the invoice total.",
    ),
    (
        "Can I use my own domain for invoice emails?",
        "On the Business plan, yes: add and verify your domain in Settings > Email.",
    ),
]


def faq(rng: random.Random) -> list[dict]:
    # The entity x action grid alone is too small, so each pair is asked in up to three phrasings,
    # as a real FAQ log would have; the answer is the same for every phrasing.
    pairs = list(POLICY)
    generated = []
    for s, p, menu, actions in ENTITIES:
        a = "an" if s[0] in "aeiou" else "a"
        for act in actions.split():
            verb, answer = ACTIONS[act]
            for form in rng.sample(Q_FORMS, 3):
                generated.append((form.format(verb=verb.format(s=s, p=p, a=a)), answer.format(s=s, p=p, menu=menu)))
    rng.shuffle(generated)
    pairs += generated[: N_FAQ - len(pairs)]
    rng.shuffle(pairs)
    return [{"question": q, "answer": a} for q, a in pairs]


# ---------------------------------------------------------------- writing
def build(seed: int = SEED) -> dict[str, list[dict]]:
    return {"tickets": tickets(random.Random(seed)), "faq": faq(random.Random(seed + 1))}


def write(out_dir: Path) -> None:
    import datasets  # heavy import, only needed here

    datasets.disable_progress_bars()
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = build()
    with open(out_dir / "tickets.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, ["id", "subject", "body", "category", "priority"], lineterminator="\n")
        w.writeheader()
        w.writerows(tables["tickets"])
    faq_rows = tables["faq"]
    table = pa.table({k: pa.array([r[k] for r in faq_rows], pa.string()) for k in ("question", "answer")})
    train = datasets.Dataset(table, split=datasets.Split.TRAIN, fingerprint=FAQ_FINGERPRINT)
    datasets.DatasetDict({"train": train}).save_to_disk(str(out_dir / "tickets_hf"))


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "data")
