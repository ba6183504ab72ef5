@echo off
rem ===========================================================================
rem verify-new.cmd WHAT: read-only checks that runner makes on new-sbs, against
rem new-sbs's own directory (no double hop: everything here is local).
rem Installed as C:\mig\bin\verify-new.cmd. Exit 0 only if every test passes;
rem each failure is printed.
rem
rem   schema     the adprep and KB 314649 results, as seen on new-sbs:
rem              schema objectVersion 30 or 31 (Windows Server 2003 / R2),
rem              CN=Windows2003Update under ForestUpdates and DomainUpdates,
rem              and the lDAPDisplayName of all three attributes that
rem              InetOrgPersonPrevent.ldf sets (KB 314649): msExchAssistantName,
rem              msExchLabeledURI, msExchHouseIdentifier.
rem   dc         new-sbs holds all five FSMO roles, is a ready global catalog
rem              (RootDSE isGlobalCatalogReady, TechNet cc739901), shares
rem              NETLOGON and SYSVOL, answers the domain's SRV record, and
rem              replicates without errors.
rem   exchange   Exchange 2003 runs on new-sbs and the schema is at Exchange
rem              2003 level (rangeUpper of ms-Exch-Schema-Version-Pt 6870).
rem   zone       new-sbs hosts the domain's zone, Active Directory-integrated.
rem
rem The names of the servers and the domain come from C:\mig\bin\customer.cmd
rem (the step customer-settings).
rem   demotion   old-sbs holds no FSMO role and is no Exchange server any more.
rem ===========================================================================
setlocal
if not exist C:\mig\bin\customer.cmd (
    echo C:\mig\bin\customer.cmd is missing: run the step customer-settings first. 1>&2
    exit /b 1
)
call C:\mig\bin\customer.cmd
set NEW=%MIG_NEW%
set OLD=%MIG_OLD%
set DOMAIN=%MIG_DOMAIN%
set DN=%MIG_DN%
set T=%TEMP%\verify-new
if not exist "%T%" mkdir "%T%"
set BAD=0
if /i "%~1"=="schema" goto schema
if /i "%~1"=="dc" goto dc
if /i "%~1"=="exchange" goto exchange
if /i "%~1"=="zone" goto zone
if /i "%~1"=="demotion" goto demotion
echo usage: verify-new.cmd schema^|dc^|exchange^|zone^|demotion 1>&2
exit /b 2

:schema
del /q "%T%\*.ldf" 2>nul
ldifde -f "%T%\schema.ldf" -s %NEW% -p base -l objectVersion -d "CN=Schema,CN=Configuration,%DN%" >nul
findstr /r /c:"^objectVersion: 3[01]" "%T%\schema.ldf" || call :bad "schema objectVersion is not 30 or 31: adprep /forestprep did not finish"
ldifde -f "%T%\forest.ldf" -s %NEW% -p base -l cn -d "CN=Windows2003Update,CN=ForestUpdates,CN=Configuration,%DN%" >nul
findstr /i /c:"dn: CN=Windows2003Update" "%T%\forest.ldf" || call :bad "CN=Windows2003Update,CN=ForestUpdates is missing"
ldifde -f "%T%\domain.ldf" -s %NEW% -p base -l cn -d "CN=Windows2003Update,CN=DomainUpdates,CN=System,%DN%" >nul
findstr /i /c:"dn: CN=Windows2003Update" "%T%\domain.ldf" || call :bad "CN=Windows2003Update,CN=DomainUpdates is missing: adprep /domainprep did not finish"
for %%A in (Assistant-Name:msExchAssistantName LabeledURI:msExchLabeledURI House-Identifier:msExchHouseIdentifier) do call :attr %%A
exit /b %BAD%

:attr
for /f "tokens=1,2 delims=:" %%a in ("%~1") do (
    ldifde -f "%T%\%%a.ldf" -s %NEW% -p base -l lDAPDisplayName -d "CN=ms-Exch-%%a,CN=Schema,CN=Configuration,%DN%" >nul
    findstr /x /c:"lDAPDisplayName: %%b" "%T%\%%a.ldf" || call :bad "ms-Exch-%%a does not have lDAPDisplayName %%b (KB 314649)"
)
goto :eof

:dc
netdom query fsmo /server:%NEW%
netdom query fsmo /server:%NEW% | find /i /c "%NEW%" | findstr /x "5" >nul || call :bad "%NEW% does not hold all five FSMO roles"
powershell -NoProfile -NonInteractive -Command "if (([ADSI]'LDAP://%NEW%/RootDSE').isGlobalCatalogReady -eq 'TRUE') { exit 0 } else { exit 1 }" || call :bad "%NEW% is not a ready global catalog"
net share | findstr /b /c:"NETLOGON " /c:"SYSVOL " | find /c /v "" | findstr /x "2" >nul || call :bad "%NEW% does not share NETLOGON and SYSVOL"
nslookup -type=SRV _ldap._tcp.dc._msdcs.%DOMAIN% 127.0.0.1 2>nul | findstr /i /c:"%NEW%.%DOMAIN%" || call :bad "%NEW% does not answer the SRV record of %DOMAIN% for itself"
repadmin /showrepl %NEW% > "%T%\repl.txt" 2>&1
findstr /i /c:"was successful" "%T%\repl.txt" >nul || call :bad "repadmin /showrepl %NEW% shows no successful replication"
findstr /i /c:"failed" "%T%\repl.txt" && call :bad "repadmin /showrepl %NEW% shows failures"
exit /b %BAD%

:exchange
for %%S in (MSExchangeIS MSExchangeSA RESvc SMTPSVC) do (
    sc query %%S | findstr /c:"RUNNING" >nul || call :bad "service %%S is not running"
)
dsquery * "CN=ms-Exch-Schema-Version-Pt,CN=Schema,CN=Configuration,%DN%" -s %NEW% -scope base -attr rangeUpper | findstr /c:"6870" || call :bad "rangeUpper of ms-Exch-Schema-Version-Pt is not 6870 (Exchange 2003)"
dsquery * "CN=Microsoft Exchange,CN=Services,CN=Configuration,%DN%" -s %NEW% -filter "(objectClass=msExchExchangeServer)" -attr cn | findstr /i /c:"%NEW%" || call :bad "%NEW% is not an Exchange server of the organization"
exit /b %BAD%

:zone
rem Verify in rehearsal: dnscmd of Windows Server 2003 lists the storage of
rem a zone as "AD-Legacy" (domain partition, Windows 2000 compatible) or
rem "AD-Domain"/"AD-Forest"; a file-backed zone shows no "AD-".
dnscmd %NEW% /enumzones
dnscmd %NEW% /enumzones | findstr /i /c:" %DOMAIN% " | findstr /i /c:"AD-" || call :bad "%DOMAIN% is not an Active Directory-integrated zone on %NEW%"
dnscmd %NEW% /enumzones | findstr /i /c:"_msdcs.%DOMAIN%" /c:" %DOMAIN% " >nul || call :bad "%NEW% does not host %DOMAIN%"
exit /b %BAD%

:demotion
netdom query fsmo /server:%NEW% | find /i /c "%NEW%" | findstr /x "5" >nul || call :bad "%NEW% does not hold all five FSMO roles"
dsquery * "CN=Microsoft Exchange,CN=Services,CN=Configuration,%DN%" -s %NEW% -filter "(objectClass=msExchExchangeServer)" -attr cn | findstr /i /c:"%OLD%" && call :bad "%OLD% is still an Exchange server of the organization"
powershell -NoProfile -NonInteractive -Command "if (([ADSI]'LDAP://%NEW%/RootDSE').isGlobalCatalogReady -eq 'TRUE') { exit 0 } else { exit 1 }" || call :bad "%NEW% is not a ready global catalog"
exit /b %BAD%

:bad
echo FAILED: %~1 1>&2
set BAD=1
goto :eof
