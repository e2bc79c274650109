-- Payment links: fixed or payer-chosen amount, slug from the title, deactivation, paying one
-- creates a finalized invoice of the link's merchant; public read by slug.
select invoices.act_as((invoices.create_merchant('Links Ltd', default_currency => 'EUR') ->> 'id')::uuid) is not null as acting;
select l->>'slug' as slug, l->>'amount' as amount, l->>'currency' as currency, l->>'active' as active
  from invoices.create_payment_link('Annual Pro plan!', amount => 99, description => 'One year of Pro') l;
select l->>'slug' as slug_taken_gets_a_suffix from invoices.create_payment_link('Annual Pro plan') l;
select l->>'slug' as slug, l->>'amount' as payer_chooses
  from invoices.create_payment_link('Tip jar', slug => 'tips', currency => 'USD') l;
-- bad input names each field and writes nothing
select invoices.create_payment_link('', slug => 'Bad Slug', amount => -1, currency => 'XXX', asset => 'DOGE',
                                    redirect_url => 'ftp://x');
select invoices.create_payment_link('Dup', slug => 'tips');
select count(*) as links from invoices.payment_links;

-- paying: a finalized invoice for the fixed amount
select i->>'status' as status, i->>'total' as total, i->>'currency' as currency, i->>'hosted_url' like '%/i/%' as hosted
  from invoices.pay_payment_link('annual-pro-plan') i;
select invoices.pay_payment_link('annual-pro-plan', amount => 50);        -- fixed: refused
select i->>'total' as total from invoices.pay_payment_link('tips', amount => 5) i;
select invoices.pay_payment_link('tips');                                  -- payer must choose
select invoices.pay_payment_link('no-such-link');
select invoice_number, status, total, currency, metadata->>'payment_link' as link, notes
  from invoices.invoices order by created_at;
select slug, invoices_created from invoices.payment_links order by slug;

-- deactivated: not payable, not public
select l->>'active' as active from invoices.deactivate_payment_link('tips') l;
select invoices.pay_payment_link('tips', amount => 5);
select slug, title, amount, currency, merchant_name from invoices.public_payment_links order by slug;

-- paying needs no merchant of the caller: it acts for the link's merchant only
reset invoices.merchant_id;
select invoices.act_as((invoices.create_merchant('Payer Co') ->> 'id')::uuid) is not null as acting;
begin;
select i->>'total' as total from invoices.pay_payment_link('annual-pro-plan') i;
select count(*) as payer_still_sees_only_its_own_invoices from invoices.invoices;
commit;
