"""A Pipedrive/Salesforce-style export as a German-French sales team keeps it (written by hand
for issue #14's "tried by hand as a new user would": ; delimiter, Windows-1252, decimal commas,
EU dates, French/German titles, a few broken lines).

    python docs/examples/pipedrive_export.py pipedrive_leads.csv
"""

import random
import sys
from pathlib import Path

random.seed(7)
titles = {
    "Directeur Financier": 3,
    "Geschäftsführer": 3,
    "Responsable Marketing": 2,
    "Leiter IT": 2,
    "Chef de projet": 1,
    "Vertriebsleiter": 2,
    "Stagiaire": 0,
    "Assistante commerciale": 0,
    "Head of Sales": 2,
    "Einkäufer": 1,
    "Directrice des achats": 2,
    "Sachbearbeiter": 0,
}
first = ["Anna", "Jürgen", "Élodie", "François", "Lena", "Marc", "Sophie", "Thomas"]
last = ["Müller", "Dupont", "Schäfer", "Lefèvre", "Weber", "Moreau"]
sources = ["Salon", "Site web", "Empfehlung", "LinkedIn", "Kaltakquise"]
status_spell = {
    "Open - Not Contacted": ["Open - Not Contacted", "open - not contacted"],
    "Working - Contacted": ["Working - Contacted", "Working-Contacted", "working - contacted"],
    "Closed - Converted": ["Closed - Converted", "CLOSED - CONVERTED"],
    "Closed - Not Converted": ["Closed - Not Converted"],
}
rows = [
    "Lead-ID;Vorname;Nachname;E-Mail;Telefon;Position;Firma;Mitarbeiter;Jahresumsatz;"
    "Erstellt am;Letzte Aktivität;Quelle;Land;Lead Status"
]
for i in range(600):
    title, senior = random.choice(list(titles.items()))
    emp = random.choice([12, 45, 180, 950, 1200, 4800, 12000])
    revenue = emp * random.uniform(80_000, 160_000)
    visits = random.random()
    score = senior + (emp > 500) + 2 * visits + random.gauss(0, 0.8)
    status = (
        "Closed - Converted"
        if score > 4
        else "Working - Contacted"
        if score > 2.6
        else "Open - Not Contacted"
        if score > 1.2
        else "Closed - Not Converted"
    )
    spelled = random.choice(status_spell[status])
    day, month = random.randint(1, 28), random.randint(1, 6)
    given, family = random.choice(first), random.choice(last)
    rev = f"{revenue:,.2f}".replace(",", "X").replace(".", ",").replace("X", ".") + " €"
    emp_s = f"{emp:,}".replace(",", ".")
    firm = random.choice(["Acme GmbH", "Dupont & Fils", "Schäfer AG", "Société Générale de Test"])
    rows.append(
        f"PD-{1000 + i};{given};{family};{given.lower()}.{family.lower()}@example.de;+49 30 {random.randint(1000000, 9999999)};"
        f"{title};{firm};{emp_s};{rev};{day:02d}.{month:02d}.2026;"
        f"{day:02d}/{month + 1:02d}/2026 {random.randint(8, 18):02d}:{random.randint(0, 59):02d};"
        f"{random.choice(sources)};{random.choice(['DE', 'FR', 'AT', 'CH'])};{spelled}"
    )
# Broken lines, as they come out of a spreadsheet someone edited.
rows[57] = rows[57] + ";Notiz: bitte anrufen;"  # 2 fields too many
rows[140] = ";".join(rows[140].split(";")[:6])  # cut after 'Position'
parts = rows[333].split(";")
parts[6] = '"Müller & Söhne; Werk 2'  # quote never closed
rows[333] = ";".join(parts)
Path(sys.argv[1] if len(sys.argv) > 1 else "pipedrive_leads.csv").write_bytes(
    ("\r\n".join(rows) + "\r\n").encode("cp1252")
)
