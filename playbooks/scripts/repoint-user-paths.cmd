@echo off
rem ===========================================================================
rem Points every user's home folder (homeDirectory) and roaming profile
rem (profilePath) at new-sbs: "\\old-sbs\REST" and "\\old-sbs.DOMAIN\REST"
rem become "\\new-sbs\REST", the rest of the path unchanged (the shares have
rem the same names on both servers). The logon script (scriptPath) is a name
rem relative to NETLOGON and needs no change.
rem
rem Before an account is changed, its old values are appended to
rem C:\mig\backup\user-paths.txt (DN, attribute, old value, tab-separated):
rem "undo" (the step's rollback) writes them back. A second run finds only
rem the accounts not yet changed. Verify in rehearsal: every homeDirectory
rem and profilePath in the inventory (C:\mig\inventory\users.csv) lies on one
rem of the copied shares (Company, Users, Scans); a profile share elsewhere
rem must be added to the copy first.
rem Runs directly on new-sbs (a domain controller: its own directory).
rem Copies itself to C:\mig\bin so that the rollback can find it.
rem The server names, the domain and its DN come from C:\mig\bin\customer.cmd
rem (the step customer-settings); PowerShell reads them from the environment.
rem ===========================================================================
setlocal
if not exist C:\mig\bin\customer.cmd (
    echo C:\mig\bin\customer.cmd is missing: run the step customer-settings first. 1>&2
    exit /b 1
)
call C:\mig\bin\customer.cmd
set BACKUP=C:\mig\backup
if not exist "%BACKUP%" mkdir "%BACKUP%"
if /i not "%~f0"=="C:\mig\bin\repoint-user-paths.cmd" copy /y "%~f0" C:\mig\bin\repoint-user-paths.cmd >nul
if /i "%~1"=="undo" goto undo

powershell -NoProfile -NonInteractive -Command "$tab = [char]9; $from = $env:MIG_OLD; $pat = '^\\\\' + [regex]::Escape($from) + '(\.' + [regex]::Escape($env:MIG_DOMAIN) + ')?\\'; $f = '(&(objectCategory=person)(objectClass=user)(|(homeDirectory=\5c\5c' + $from + '*)(profilePath=\5c\5c' + $from + '*)))'; $s = New-Object DirectoryServices.DirectorySearcher([ADSI]('LDAP://' + $env:MIG_NEW + '/' + $env:MIG_DN), $f); $s.PageSize = 500; $n = 0; foreach ($r in $s.FindAll()) { $u = $r.GetDirectoryEntry(); $dn = [string]$u.Properties['distinguishedName'].Value; foreach ($a in 'homeDirectory', 'profilePath') { $v = [string]$u.Properties[$a].Value; if ($v -match $pat) { Add-Content -Path 'C:\mig\backup\user-paths.txt' -Value ($dn + $tab + $a + $tab + $v); $u.Properties[$a].Value = ($v -replace $pat, ('\\' + $env:MIG_NEW + '\')); Write-Output ($dn + ': ' + $a + ' ' + $v + ' -> ' + $u.Properties[$a].Value) } }; $u.CommitChanges(); $n++ }; Write-Output ([string]$n + ' account(s) changed')"
exit /b %errorlevel%

:undo
if not exist "%BACKUP%\user-paths.txt" (
    echo Nothing to undo: %BACKUP%\user-paths.txt does not exist.
    exit /b 0
)
powershell -NoProfile -NonInteractive -Command "foreach ($l in Get-Content 'C:\mig\backup\user-paths.txt') { $p = $l.Split([char]9); $u = [ADSI]('LDAP://' + $env:MIG_NEW + '/' + $p[0]); $u.Properties[$p[1]].Value = $p[2]; $u.CommitChanges(); Write-Output ($p[0] + ': ' + $p[1] + ' back to ' + $p[2]) }"
exit /b %errorlevel%
