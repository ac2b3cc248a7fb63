"""Write tests/fixtures/pii_names_fixture.jsonl: support tickets that name their writers, with labels.

The names were chosen by hand from many languages and naming traditions (East and South-East Asian,
South Asian, Arabic, Persian, Turkish, African, Slavic, Nordic, Celtic, Southern European, Pacific,
Latin American, Hebrew), not taken from Faker's lists, so the heuristic name-list recognizer is not
graded on its own word lists. Some tickets have no name at all but capitalised products, places and
teams, so precision is measured too. Deterministic (seeded); rerun with
``python scripts/make_pii_names_fixture.py``.
"""

from __future__ import annotations

import json
import random
import unicodedata
from pathlib import Path

NAMES = """
Wei Sato|Oluwaseun Adeyemi|Nguyen Thi Lan|Aarav Sharma|Priya Ramanathan|Fatima Al-Zahra|Mehmet Yilmaz
Chinonso Okeke|Amara Nwosu|Kwame Mensah|Abebe Bikila|Wanjiru Kamau|Thandiwe Dlamini|Sipho Ndlovu
Hiroshi Tanaka|Yuki Nakamura|Min-jun Park|Seo-yeon Kim|Zhang Xiuying|Liu Yang|Chen Jiahui
Dmitri Volkov|Anastasia Petrova|Katarzyna Wiśniewska|Łukasz Zieliński|Ondřej Dvořák|Zsófia Nagy
Søren Kierkegaard Holm|Ingrid Bergström|Aino Virtanen|Þórunn Sigurðardóttir|Siobhán Ní Bhriain
Eoghan Ó Súilleabháin|Giulia Esposito|Matteo Ricci|João Pereira|Inês Carvalho|Lucía Fernández
Alejandro Gutiérrez|Camila Rojas|Thiago Oliveira|Valentina Restrepo|Aroha Ngata|Keoni Kahananui
Siaosi Tuilagi|Darius Rahimi|Shirin Tehrani|Ahmad Karimi|Noor Haddad|Yusuf Demir|Elif Şahin
Avraham Cohen|Tamar Levi|Rangi Parata|Anjali Deshpande|Rohan Iyer|Sandeep Gill|Harpreet Kaur
Nomvula Khumalo|Babajide Ogunleye|Ngozi Eze|Chiamaka Obi|Tunde Bakare|Moussa Diallo|Aminata Traoré
Mamadou Keita|Kofi Boateng|Efua Asante|Tariq Mahmood|Ayesha Siddiqui|Bilal Chaudhry|Farhan Hossain
Rina Wijaya|Budi Santoso|Siti Rahmawati|Maria Clara Santos|Jose Rizal Dela Cruz|Somchai Srisuk
Kanya Chaiyaporn|Tran Van Minh|Pham Thu Ha|Vikram Venkatesh|Ioana Popescu|Andrei Ionescu
Eleni Papadopoulou|Nikos Georgiou|Árpád Kovács|Jelena Marković|Milan Horvat|Goran Petrović
Bolat Nurlanov|Aigerim Sarsenova|Tenzin Dorje|Pemba Sherpa|Rustam Karimov|Dilnoza Yusupova
""".replace("\n", "|").split("|")
NAMES = [n.strip() for n in NAMES if n.strip()]

PHONES = ["+44 20 7946 0958", "+1 415-555-0132", "+49 30 901820", "+33 1 42 68 53 00", "+91 98765 43210"]

TEMPLATES = [
    "Hi, I'm {name} and my order never arrived. Please reach me at {email}.",
    "Hello support, this is {name}. The app crashes on login since the update. Email: {email}",
    "Dear team, my name is {name}; I was charged twice this month. You can call me on {phone}.",
    "{name} here. The invoice PDF is blank when I download it. Reply to {email}, thanks.",
    "Good morning. I am writing on behalf of {name}, who cannot reset the password. Contact: {email}",
    "Ticket from {name}: the tracking page shows an error. Phone {phone}.",
    "Hi there, {name} again. Still no refund after two weeks. Reach me at {email} or {phone}.",
    "Thanks for the quick fix! Best regards, {name} ({email})",
    "My colleague {name} asked me to report that exports fail for files over 2 GB.",
    "Hello, I'm {name} from the accounting team. The VAT numbers are missing on receipts. {email}",
    "Could someone call {name} back on {phone}? The delivery address is wrong.",
    "Hi! It's {name}. I'd like to cancel my subscription before it renews. Mail: {email}",
]

NEGATIVES = [
    "The Android app freezes on the Settings screen after version 4.2.1.",
    "Please escalate: Premium Plus customers in Berlin cannot check out.",
    "Our Finance Team needs the March invoices exported as CSV.",
    "Order 55120 was shipped via DHL Express to Lagos on Monday.",
    "The New York warehouse reports that Blue Ocean Kettles are out of stock.",
    "Dark Mode makes the Export button invisible on Windows 11.",
    "Is Apple Pay supported in the Brazil store yet?",
    "The Help Center article about Two Factor Authentication links to a 404 page.",
    "Customer Success said the Gold Plan includes priority support.",
    "Hi, the Sydney Opera House tickets in my basket disappeared.",
    "Hello, when will Google Sheets integration be available?",
    "Thanks, the Amazon Web Services outage explains the delays.",
    "Hi team, the Tokyo office printer queue is stuck again.",
    "Good evening, Microsoft Teams notifications stopped working.",
    "Dear support, the Lake District tour was cancelled without notice.",
    "Hello, the Samsung Galaxy S24 is not listed as compatible.",
    "Our Mount Kenya Safari booking shows the wrong dates.",
    "Hi, please update the Rio de Janeiro shipping rates.",
    "The Red Cross donation receipt is missing its reference number.",
    "Hey, Visa and Mastercard payments fail but PayPal works.",
]


def _ascii(s: str) -> str:
    return unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode().lower()


def _email(name: str, rng: random.Random) -> str:
    parts = [p for p in _ascii(name).replace("-", " ").split() if p]
    local = rng.choice([".".join(parts), parts[0] + parts[-1][0], parts[0][0] + parts[-1]])
    return f"{local}@{rng.choice(['example.com', 'mail.example.org', 'example.net'])}"


def main() -> None:
    rng = random.Random(19)
    rows = []
    for i, name in enumerate(NAMES):
        template = TEMPLATES[i % len(TEMPLATES)]
        email, phone = _email(name, rng), rng.choice(PHONES)
        text = template.format(name=name, email=email, phone=phone)
        entities = [{"type": "PERSON", "value": name}]
        if "{email}" in template:
            entities.append({"type": "EMAIL_ADDRESS", "value": email})
        if "{phone}" in template:
            entities.append({"type": "PHONE_NUMBER", "value": phone})
        rows.append({"text": text, "entities": entities})
    rows += [{"text": t, "entities": []} for t in NEGATIVES]
    rng.shuffle(rows)
    out = Path(__file__).parents[1] / "tests" / "fixtures" / "pii_names_fixture.jsonl"
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{out}: {len(rows)} tickets, {len(NAMES)} names, {len(NEGATIVES)} without personal data")


if __name__ == "__main__":
    main()
