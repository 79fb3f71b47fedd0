"""Writes docs/data-protection-standard.docx, the demo corpus's DOCX document.

Run from the repository root: `.venv/bin/python data/demo/make_docx.py`. The .docx is
committed; this script is kept so that it can be regenerated or changed. python-docx
stamps the current time into the core properties, so we fix them for a stable file hash.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from docx import Document

TARGET = Path(__file__).resolve().parent / "docs" / "data-protection-standard.docx"
FIXED_TIME = dt.datetime(2026, 3, 20, 9, 0, 0)


def build(target: Path = TARGET) -> Path:
    doc = Document()
    props = doc.core_properties
    props.author = "Northwind Freight Data Protection Office"
    props.title = "Northwind Freight Data Protection Standard"
    props.created = FIXED_TIME
    props.modified = FIXED_TIME
    props.last_modified_by = "Northwind Freight Data Protection Office"
    props.revision = 1

    doc.add_heading("Northwind Freight Data Protection Standard", level=1)
    doc.add_paragraph(
        "Standard ID: NWF-SEC-002 · Version 4.0 · Effective 2026-03-20 · "
        "Owner: Data Protection Officer (DPO)"
    )

    doc.add_heading("Data Classification", level=2)
    doc.add_paragraph(
        "All information that Northwind Freight creates or receives is classified by its "
        "owner into one of four levels. The level decides how the information is stored, "
        "shared and destroyed."
    )
    table = doc.add_table(rows=1, cols=3)
    table.style = "Table Grid"
    header = table.rows[0].cells
    header[0].text, header[1].text, header[2].text = "Level", "Examples", "Handling"
    rows = [
        ("Public", "Published tariffs, press releases", "No restrictions"),
        ("Internal", "Route plans, internal procedures", "Staff and contracted partners only"),
        ("Confidential", "Customer contracts, consignee addresses", "Need-to-know; encrypted in transit"),
        ("Restricted", "Payroll data, passport scans, customs IDs", "Named individuals; encrypted at rest and in transit"),
    ]
    for level, examples, handling in rows:
        cells = table.add_row().cells
        cells[0].text, cells[1].text, cells[2].text = level, examples, handling

    doc.add_heading("Encryption Requirements", level=2)
    doc.add_paragraph("The following minimum controls protect Confidential and Restricted data:")
    for item in [
        "Laptops and driver tablets use full-disk encryption (BitLocker or FileVault) with keys escrowed centrally.",
        "Data in transit is protected with TLS 1.2 or higher; TLS 1.0 and 1.1 are disabled on all services.",
        "Databases holding Restricted data are encrypted at rest with AES-256 and keys held in the cloud key management service.",
        "Encryption keys are rotated at least every 12 months and immediately after suspected compromise.",
    ]:
        doc.add_paragraph(item, style="List Bullet")

    doc.add_heading("Retention and Disposal", level=2)
    doc.add_paragraph(
        "Personal data is kept no longer than needed for the purpose it was collected for. "
        "The retention schedule sets these periods:"
    )
    for item in [
        "Shipment records and proofs of delivery: 7 years, for tax and customs audits.",
        "CCTV recordings at depots: 28 days, unless needed for an investigation.",
        "Job applications of candidates not hired: 4 weeks after the decision, or 1 year with consent.",
        "Driver telematics data: 13 months.",
    ]:
        doc.add_paragraph(item, style="List Number")
    doc.add_paragraph(
        "When the period ends, records are deleted from systems and backups in the next "
        "deletion cycle, and paper records are shredded under contract DP-2026-03."
    )

    doc.add_heading("Personal Data Requests and Transfers", level=2)
    doc.add_paragraph(
        "Customers, consignees and employees may ask to see, correct or delete their personal "
        "data. Requests are logged by the DPO and answered within one month. Personal data is "
        "transferred outside the European Economic Area only under standard contractual "
        "clauses approved by the DPO, and every new processing activity that involves "
        "Restricted data needs a data protection impact assessment (DPIA) before it starts."
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    doc.save(str(target))
    return target


if __name__ == "__main__":
    print(build())
